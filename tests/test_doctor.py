"""Damaged workspaces: every kind of damage is named with the command that repairs it (never a
traceback, never a silently wrong answer), and `imgcluster doctor --repair` mends each kind."""

from __future__ import annotations

import contextlib

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster.errors import WorkspaceDamaged, WorkspaceTooNew

from .conftest import write_photos

CONFIG = dict(config=imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(method="pca", map_method="pca")),
              method="kmeans", k=2, namer="none", model="efficientnet-lite0")


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(photos, a clean workspace, its run key): one clustering, copied by each test."""
    base = tmp_path_factory.mktemp("doctor")
    photos = base / "photos"
    write_photos(photos, 24)
    run = imgcluster.cluster(photos, workspace=base / "ws", **CONFIG)
    return photos, base / "ws", run.key


@pytest.fixture
def workspace(clustered, tmp_path) -> tuple[Path, Path, str]:
    photos, clean, key = clustered
    copy = tmp_path / "ws"
    shutil.copytree(clean, copy, ignore=shutil.ignore_patterns("lock"))
    return photos, copy, key


def shards(ws: Path) -> list[Path]:
    return sorted((ws / "vectors").rglob("*.npy"))


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(max(path.stat().st_size, 4096)))


def scribble(catalogue: Path) -> None:
    """Garbage over the pages after the first (the images table's among them), header intact."""
    data = bytearray(catalogue.read_bytes())
    data[4096:4096 * 6] = np.random.default_rng(1).bytes(4096 * 5)
    catalogue.write_bytes(bytes(data))


def nan_shard(path: Path) -> None:
    values = np.load(path)
    values[0, :3] = np.nan
    np.save(path, values)  # a well-formed file whose values are not: only its digest and the value check see it


def tableless(catalogue: Path) -> None:
    """A valid SQLite file holding no tables, where the catalogue was (as a new one would start)."""
    import sqlite3

    for suffix in ("", "-wal", "-shm"):
        Path(f"{catalogue}{suffix}").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(catalogue)) as db:
        db.execute("PRAGMA user_version = 1")
        db.commit()


def recluster(photos: Path, ws: Path) -> None:
    imgcluster.cluster(photos, workspace=ws, **CONFIG)


def read_run(photos: Path, ws: Path) -> None:
    imgcluster.load_run(workspace=ws)


def file_images(photos: Path, ws: Path) -> None:
    imgcluster.predict([next(photos.glob("*.jpg"))], workspace=ws)


# (name, damage(workspace, run key), what a user runs then, the words the message must hold, the kind doctor reports)
DAMAGE: list[tuple[str, Callable[[Path, str], None], Callable[[Path, Path], None], str, str]] = [
    ("catalogue garbage", lambda ws, key: garbage(ws / "catalogue.db"), read_run, "not an SQLite database",
     "catalogue"),
    ("catalogue truncated", lambda ws, key: cut(ws / "catalogue.db"), read_run, "truncated", "catalogue"),
    ("catalogue emptied", lambda ws, key: (ws / "catalogue.db").write_bytes(b""), read_run, "empty (0 bytes)",
     "catalogue"),
    ("catalogue without tables", lambda ws, key: tableless(ws / "catalogue.db"), read_run, "holds no tables",
     "catalogue"),
    ("catalogue page garbage", lambda ws, key: scribble(ws / "catalogue.db"), read_run, "is corrupt", "catalogue"),
    ("shard deleted", lambda ws, key: shards(ws)[0].unlink(), recluster, "is missing", "shard"),
    ("shard truncated", lambda ws, key: cut(shards(ws)[0], 0.6), recluster, "cannot be read", "shard"),
    ("shard garbage", lambda ws, key: garbage(shards(ws)[0]), recluster, "cannot be read", "shard"),
    ("assignments deleted", lambda ws, key: (ws / "runs" / key / "assignments.npz").unlink(), read_run,
     "assignments file", "assignments"),
    ("assignments truncated", lambda ws, key: cut(ws / "runs" / key / "assignments.npz"), read_run,
     "assignments.npz", "assignments"),
    ("predictor index deleted", lambda ws, key: (ws / "runs" / key / "predictor" / "index.faiss").unlink(),
     file_images, "index.faiss", "predictor"),
    ("predictor index garbage", lambda ws, key: garbage(ws / "runs" / key / "predictor" / "index.faiss"),
     file_images, "index.faiss", "predictor"),
]


@pytest.mark.parametrize("name, damage, use, words, kind", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damage_is_named_with_the_repair_command(workspace, name, damage, use, words, kind) -> None:
    photos, ws, key = workspace
    damage(ws, key)
    with pytest.raises(WorkspaceDamaged, match="doctor --repair") as caught:
        use(photos, ws)
    assert words in str(caught.value)
    assert [p.kind for p in imgcluster.doctor(workspace=ws).problems] == [kind]


@pytest.mark.parametrize("name, damage, use, words, kind", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_doctor_repairs_each_damage_kind(workspace, name, damage, use, words, kind) -> None:
    photos, ws, key = workspace
    damage(ws, key)
    checkup = imgcluster.doctor(workspace=ws, repair=True, device="cpu")
    assert checkup.healthy, checkup.remaining
    assert checkup.actions and all(a.message for a in checkup.actions)
    assert imgcluster.doctor(workspace=ws).healthy
    assert name == "shard deleted" or list((ws / "quarantine").iterdir())  # what can't be saved is kept
    listed = [r.key for r in imgcluster.list_runs(workspace=ws)]
    if kind == "assignments" or (kind == "catalogue" and key not in listed):
        # A run that can't be rebuilt (its assignments, or its images' catalogue ids, are lost) is
        # quarantined and said so, never kept as a run that silently holds nothing.
        assert key not in listed
        assert any(p.name.startswith(f"run-{key}") for p in (ws / "quarantine").iterdir())
        assert any(key in a.message and "quarantine" in a.message for a in checkup.actions)
    else:
        assert listed == [key]
        assert len(imgcluster.load_run(key, workspace=ws).images) == 24
    use_after = recluster if kind in ("catalogue", "assignments") else use
    use_after(photos, ws)


def test_a_garbage_catalogue_is_rebuilt_from_what_survives(workspace) -> None:
    photos, ws, key = workspace
    garbage(ws / "catalogue.db")
    checkup = imgcluster.doctor(workspace=ws, repair=True)
    said = " ".join(a.message for a in checkup.actions)
    assert "re-indexed 24 embeddings" in said  # from the shards' sidecars: nothing is embedded again
    assert f"run-{key}" in said or key in said  # its images' ids are lost: the run is quarantined, and said so
    assert (ws / "quarantine").is_dir() and any(p.name.startswith("catalogue") for p in (ws / "quarantine").iterdir())
    run = imgcluster.cluster(photos, workspace=ws, **CONFIG)
    assert run.record.as_info()["embedding"] == {"new": 0, "cached": 24}


def test_a_nan_in_a_shard_is_found_and_embedded_again(workspace) -> None:
    photos, ws, key = workspace
    nan_shard(shards(ws)[0])
    problems = imgcluster.doctor(workspace=ws).problems
    assert [p.kind for p in problems] == ["shard"]
    assert "not finite" in problems[0].message
    assert imgcluster.doctor(workspace=ws, repair=True, device="cpu").healthy
    values = np.concatenate([np.load(p) for p in shards(ws)])
    assert np.isfinite(values).all()


def test_update_with_lost_assignments_refuses_instead_of_refiling_everything(workspace) -> None:
    photos, ws, key = workspace
    write_photos(photos.parent / "more", 2, start=100)
    (ws / "runs" / key / "assignments.npz").unlink()
    with pytest.raises(WorkspaceDamaged, match=r"assignments file .* is missing.*doctor --repair"):
        imgcluster.update(photos, workspace=ws)


def set_schema(ws: Path, version: str) -> None:
    with sqlite3.connect(ws / "catalogue.db") as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    db.close()


def schema(ws: Path) -> str:
    with sqlite3.connect(ws / "catalogue.db") as db:
        value = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    db.close()
    return str(value)


def test_a_newer_schema_is_refused_and_never_downgraded(workspace) -> None:
    photos, ws, key = workspace
    set_schema(ws, "999")
    for reader in (lambda: imgcluster.list_runs(workspace=ws), lambda: imgcluster.load_run(workspace=ws),
                   lambda: imgcluster.cluster(photos, workspace=ws, **CONFIG)):
        with pytest.raises(WorkspaceTooNew, match=r"newer imgcluster \(schema 999.*Upgrade imgcluster"):
            reader()
    checkup = imgcluster.doctor(workspace=ws, repair=True)
    assert [p.kind for p in checkup.problems] == ["schema"] and not checkup.healthy
    assert schema(ws) == "999"
    assert not (ws / "quarantine").exists()


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgcluster.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_readers_never_create_a_workspace(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert imgcluster.list_runs(empty) == []
    listed = cli("runs", "list", str(empty))
    assert listed.returncode == 0, listed.stderr
    missing = tmp_path / "missing"
    names = cli("names", "--folder", str(missing))
    assert names.returncode == 2 and ("No imgcluster workspace" in names.stderr or "does not exist" in names.stderr)
    assert "Traceback" not in names.stderr
    assert list(empty.iterdir()) == [] and not missing.exists()


def test_cli_doctor_reports_repairs_and_exits_by_health(workspace) -> None:
    photos, ws, key = workspace
    healthy = cli("doctor", "--workspace", str(ws))
    assert healthy.returncode == 0 and "healthy" in healthy.stdout
    (ws / "runs" / key / "predictor" / "index.faiss").unlink()
    found = cli("doctor", "--workspace", str(ws), "--json")
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert [p["kind"] for p in report["problems"]] == ["predictor"] and report["problems"][0]["repair"]
    fixed = cli("doctor", "--workspace", str(ws), "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "repaired" in fixed.stdout and "healthy now" in fixed.stdout
    assert (ws / "runs" / key / "predictor" / "index.faiss").is_file()


def test_cli_names_damage_without_a_traceback(workspace) -> None:
    photos, ws, key = workspace
    cut(ws / "catalogue.db")
    for args in (("runs", "list", "--workspace", str(ws)), ("report", "--workspace", str(ws)),
                 ("update", str(photos), "--workspace", str(ws))):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and "doctor --repair" in done.stderr


@pytest.mark.parametrize("damage", ["catalogue", "assignments", "index"])
def test_the_web_app_answers_damage_with_503_and_the_repair(workspace, damage) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from imgcluster.web import create_app

    photos, ws, key = workspace
    if damage == "catalogue":
        garbage(ws / "catalogue.db")
    app = create_app(ws)
    if damage == "assignments":
        (ws / "runs" / key / "assignments.npz").unlink()
    if damage == "index":
        (ws / "runs" / key / "predictor" / "index.faiss").unlink()
    with TestClient(app, raise_server_exceptions=False) as client:
        if damage == "index":
            with open(next(photos.glob("*.jpg")), "rb") as handle:
                answer = client.post(f"/api/predict?run={key}", files={"file": ("a.jpg", handle, "image/jpeg")})
        elif damage == "assignments":
            answer = client.get(f"/api/runs/{key}/map")
        else:
            answer = client.get(f"/api/clusters?run={key}")
        assert answer.status_code == 503, answer.text
        assert "doctor --repair" in answer.json()["detail"]
