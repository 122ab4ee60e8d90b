"""Embedding on Ray (`imgcluster embed --engine ray`): the vectors one process makes, bad files skipped
with the same reasons, a killed worker does not stop the job, an interrupted command resumes with only
the rest, the vectors exported as Parquet shards, a batch that kills its worker every time stops the
command after the retries. One local Ray (2 CPUs) serves the module: starting it takes ~15 s on 2 cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import imgcluster
from imgcluster.config import RayConfig

from ..conftest import jpeg_bytes, photo, write_photos

MODEL = "efficientnet-lite0"
N_IMAGES = 200
CONFIG = imgcluster.EmbedConfig(model=MODEL)


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray with 2 CPUs for the module; its address, for commands that join it."""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra imgcluster[ray] (`make install` installs it)")
    previous = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # tests never touch the network
    context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    if previous is None:
        os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
    else:
        os.environ["RAY_USAGE_STATS_ENABLED"] = previous


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 small drawn images of varied colours and shapes, a truncated JPEG and a zero-byte file."""
    folder = tmp_path_factory.mktemp("ray-images")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        image = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        x, y, size = (int(v) for v in rng.integers(0, 40, 3))
        shape = draw.ellipse if i % 3 == 0 else draw.rectangle if i % 3 == 1 else draw.chord
        kwargs = {"start": 0, "end": 200} if shape == draw.chord else {}
        shape([x, y, x + size + 8, y + size + 8], fill=tuple(int(c) for c in rng.integers(0, 256, 3)), **kwargs)
        image.save(folder / f"image-{i:03d}.png")
    whole = jpeg_bytes(photo(1, (300, 200)))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "zero-byte.jpg").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def reference(images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The single-process embedding of ``images``: vectors by content hash, skip reasons by file name."""
    workspace = tmp_path_factory.mktemp("one-process")
    done = imgcluster.embed_folder(images, config=CONFIG, workspace=workspace)
    assert done.n_embedded == N_IMAGES and done.engine == {"name": "local"}
    return {"vectors": stored_vectors(workspace, done.model["model_id"]), "skipped": skip_reasons(done.skipped),
            "model_id": done.model["model_id"]}


def stored_vectors(workspace: Path, model_id: str) -> dict[str, np.ndarray]:
    ws = imgcluster.open_workspace(workspace=workspace)
    try:
        hashes = sorted(ws.embedded_hashes(model_id))
        return dict(zip(hashes, ws.load_embeddings(model_id, hashes)))
    finally:
        ws.close()


def skip_reasons(skipped) -> dict[str, tuple[str, str]]:
    return {Path(r.path).name: (r.skip_stage, r.skip_reason) for r in skipped}


def assert_same_vectors(workspace: Path, reference: dict) -> None:
    vectors = stored_vectors(workspace, reference["model_id"])
    assert vectors.keys() == reference["vectors"].keys()
    for content_hash, vector in reference["vectors"].items():
        # Stored as float16: the two processes' float32 outputs (1e-6 apart) may round one step apart.
        assert np.allclose(vectors[content_hash], vector, rtol=2**-10, atol=2**-14), content_hash


def test_ray_embedding_equals_one_process_and_skips_bad_files_alike(images, reference, ray_address, tmp_path):
    # The command as a user runs it, joining a running cluster with --address.
    workspace = tmp_path / "ws"
    result = subprocess.run(
        [sys.executable, "-m", "imgcluster.cli", "embed", str(images), "--workspace", str(workspace),
         "--model", MODEL, "--engine", "ray", "--address", ray_address, "--workers", "2", "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["model"] == MODEL and summary["model_id"] == reference["model_id"]
    assert summary["engine"] == {"name": "ray", "address": ray_address, "workers": 2}
    # The truncated JPEG passes the scan and fails to decode in a worker; the empty file stops at the scan.
    assert (summary["images"], summary["embedded_now"], summary["cached"]) == (N_IMAGES + 1, N_IMAGES, 0)
    skipped = {Path(s["path"]).name: (s["stage"], s["reason"]) for s in summary["skipped"]}
    assert skipped == reference["skipped"]
    assert set(skipped) == {"truncated.jpg", "zero-byte.jpg"} and all(reason for _, reason in skipped.values())
    assert_same_vectors(workspace, reference)


def ray_worker_pids() -> list[int]:
    """Processes of Ray Data's embedding actors (Ray titles them ray::MapWorker(MapBatches(EmbedWorker)))."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::MapWorker") and b"EmbedWorker" in title:
                pids.append(int(entry.name))
    return pids


class Interrupted(Exception):
    """Stands for Ctrl-C, or the command's machine going away."""


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds Ray's worker processes through /proc")
def test_an_interrupted_run_resumes_with_only_the_rest_even_when_a_worker_is_killed(images, reference, ray_address,
                                                                                     tmp_path):
    # Two behaviours in one test: each Ray run costs 10-20 s of actor start-up on 2 cores.
    workspace = tmp_path / "ws"
    config = imgcluster.EmbedConfig(model=MODEL, commit_every=16)

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "embed" and done > 0:  # the first batch is written
            raise Interrupted

    with pytest.raises(Interrupted):
        imgcluster.embed_folder(images, config=config, workspace=workspace, engine="ray",
                                ray_config=RayConfig(workers=2), progress=interrupt)
    kept = len(stored_vectors(workspace, reference["model_id"]))
    assert 0 < kept < N_IMAGES

    killed: list[int] = []

    def kill_a_worker(stage: str, done: int, total: int) -> None:
        if stage != "embed":
            return
        if not killed and done > kept:  # the first batch is back, the others are being embedded
            pids = ray_worker_pids()
            assert pids, "the embedding actors should be running"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    resumed = imgcluster.embed_folder(images, config=config, workspace=workspace, engine="ray",
                                      ray_config=RayConfig(workers=2), progress=kill_a_worker)
    assert killed
    assert (resumed.n_cached, resumed.n_embedded) == (kept, N_IMAGES - kept)
    assert skip_reasons(resumed.skipped) == reference["skipped"]
    assert_same_vectors(workspace, reference)


def test_ray_embedding_exports_the_workspace_vectors_as_parquet_shards(images, ray_address, tmp_path):
    url = f"memory://ray-export-{tmp_path.name}/vectors"
    done = imgcluster.embed_folder(images, config=imgcluster.EmbedConfig(model=MODEL, commit_every=64),
                                   workspace=tmp_path / "ws", engine="ray", ray_config=RayConfig(workers=2),
                                   shards_to=url)
    assert done.export["rows_written"] == N_IMAGES and done.export["shards_written"] >= 2
    exported = imgcluster.read_exported_shards(url)
    stored = stored_vectors(tmp_path / "ws", done.model["model_id"])
    assert sorted(exported.content_hashes) == sorted(stored) and exported.model_id == done.model["model_id"]
    for content_hash, vector in zip(exported.content_hashes, exported.vectors):
        assert np.array_equal(vector, stored[content_hash])
    assert {Path(p).name for p in exported.paths} == {f"image-{i:03d}.png" for i in range(N_IMAGES)}


# Runs in every Python process of the job that imports it (PYTHONPATH): a Ray worker that opens a file named
# crash-the-worker dies at once, as a decoder crash or the kernel's OOM killer would kill it, and says so first.
CRASHING_DECODER = """
import os, sys
if any("default_worker" in arg for arg in sys.argv):
    import pathlib
    import PIL.Image
    def _crash_on(name):
        if "crash-the-worker" in str(name):
            with open(os.environ["CRASH_LOG"], "a") as log:
                log.write(f"{os.getpid()}\\n")
            os._exit(1)
    _open, _read_bytes = PIL.Image.open, pathlib.Path.read_bytes
    def _crashing_open(fp, *args, **kwargs):
        _crash_on(fp)
        return _open(fp, *args, **kwargs)
    def _crashing_read_bytes(self):  # the embedder reads a file's bytes once, then decodes them
        _crash_on(self)
        return _read_bytes(self)
    PIL.Image.open, pathlib.Path.read_bytes = _crashing_open, _crashing_read_bytes
"""


def test_a_batch_that_kills_its_worker_every_time_stops_the_command_after_the_retries(ray_address, tmp_path):
    folder = tmp_path / "images"
    write_photos(folder, 3)
    photo(99).save(folder / "crash-the-worker.jpg")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASHING_DECODER)
    crashes = tmp_path / "crashes.log"
    # The job's workers get the hook through the job config Ray reads at ray.init (as `ray job submit` passes it).
    job = {"runtime_env": {"env_vars": {"PYTHONPATH": str(hook), "CRASH_LOG": str(crashes)}}}
    result = subprocess.run(
        [sys.executable, "-m", "imgcluster.cli", "embed", str(folder), "--workspace", str(tmp_path / "ws"),
         "--model", MODEL, "--engine", "ray", "--address", ray_address, "--workers", "1", "--retries", "1"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, RAY_JOB_CONFIG_JSON_ENV_VAR=json.dumps(job)))
    assert result.returncode == 2, result.stderr
    assert len(crashes.read_text().split()) == 2  # the first attempt and one retry, then no more
    # Ray Data logs its own error first; the command's last word is one line that says what to do.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: A Ray worker died 2 times on the same batch") and "--retries" in last


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, images, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(imgcluster.ConfigError, match=r"pip install 'imgcluster\[ray\]'"):
        imgcluster.embed_folder(images, config=CONFIG, workspace=tmp_path / "ws", engine="ray")
