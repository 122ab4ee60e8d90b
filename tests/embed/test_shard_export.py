"""`imgcluster embed PATH --shards-to URL`: the embeddings also go to Parquet shards at a folder or fsspec URL,
one per committed batch, equal to the workspace's vectors; a re-run writes only what is missing and never
rewrites a shard; a URL that cannot work fails before any embedding. On the local engine (the Ray case is in
test_ray_engine.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import imgcluster
from imgcluster.store.vector_export import ShardExport

from ..conftest import write_photos

MODEL = "efficientnet-lite0"
# 4 images a forward batch on CPU, so a commit (and a shard) every 2 batches, or every 5 s under load.
CONFIG = imgcluster.EmbedConfig(model=MODEL, commit_every=8)


def workspace_vectors(workspace: Path, model_id: str) -> dict[str, np.ndarray]:
    with imgcluster.open_workspace(workspace=workspace) as ws:
        hashes = sorted(ws.embedded_hashes(model_id))
        return dict(zip(hashes, ws.load_embeddings(model_id, hashes)))


def shard_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Shard name → (inode, mtime_ns): a rewritten shard changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("part-*.parquet")}


def assert_same_as_workspace(exported: imgcluster.ExportedVectors, workspace: Path, folder: Path) -> None:
    stored = workspace_vectors(workspace, exported.model_id)
    assert sorted(exported.content_hashes) == sorted(stored)   # every embedding once, nothing else
    assert exported.vectors.dtype == np.float32 and exported.vectors.shape == (len(stored), 1280)
    for content_hash, vector in zip(exported.content_hashes, exported.vectors):
        # The workspace's float16 values, widened: equal, not merely close.
        assert np.array_equal(vector, stored[content_hash]), content_hash
    with imgcluster.open_workspace(workspace=workspace) as ws:
        path_of = {r.content_hash: r.path for r in ws.images()}
    assert all(path_of[h] == p and Path(p).parent == folder for h, p in zip(exported.content_hashes, exported.paths))


def test_the_command_writes_shards_to_a_folder_that_read_back_as_the_workspace(tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 20)
    shards = tmp_path / "shards"
    result = subprocess.run([sys.executable, "-m", "imgcluster.cli", "embed", str(photos), "--model", MODEL,
                             "--commit-every", "8", "--shards-to", str(shards), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    export = json.loads(result.stdout)["export"]
    files = sorted(shards.glob("part-*.parquet"))
    assert export == {"url": str(shards), "shards": len(files), "rows": 20, "shards_written": len(files),
                      "rows_written": 20}
    assert len(files) >= 3  # one per committed batch of at most 8
    assert not list(shards.glob(".tmp-*"))
    schema = pq.read_schema(files[0])
    assert schema.field("vector").type == pa.list_(pa.float32(), 1280)
    assert schema.field("content_hash").type == schema.field("path").type == pa.string()
    exported = imgcluster.read_exported_shards(f"file://{shards}")
    assert_same_as_workspace(exported, photos / ".imgcluster", photos)


def test_shards_to_an_fsspec_url_read_back_as_the_workspace(tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 12)
    url = f"memory://imgcluster-test-{uuid.uuid4().hex}/vectors"
    done = imgcluster.embed_folder(photos, config=CONFIG, workspace=tmp_path / "ws", shards_to=url)
    assert done.n_embedded == 12 and done.export["rows_written"] == 12 and done.export["shards_written"] >= 2
    exported = imgcluster.read_exported_shards(url)
    assert exported.model_id == done.model["model_id"]
    assert_same_as_workspace(exported, tmp_path / "ws", photos)


class Interrupted(Exception):
    """Stands for Ctrl-C."""


def test_a_rerun_writes_only_the_missing_shards_and_never_rewrites_one(tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 24)
    shards, workspace = tmp_path / "shards", tmp_path / "ws"

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "embed" and done >= 12:  # a commit of 8 is written, the next batch is in flight
            raise Interrupted

    with pytest.raises(Interrupted):
        imgcluster.embed_folder(photos, config=CONFIG, workspace=workspace, shards_to=str(shards),
                                progress=interrupt)
    first = shard_files(shards)
    kept = len(imgcluster.read_exported_shards(str(shards)).content_hashes)
    assert first and 0 < kept < 24

    resumed = imgcluster.embed_folder(photos, config=CONFIG, workspace=workspace, shards_to=str(shards))
    assert (resumed.n_cached, resumed.n_embedded) == (kept, 24 - kept)
    assert resumed.export["rows_written"] == 24 - kept
    after = shard_files(shards)
    assert {name: after[name] for name in first} == first  # the shards written before are untouched
    assert_same_as_workspace(imgcluster.read_exported_shards(str(shards)), workspace, photos)

    # A shard lost from the export (or embeddings cached before the export began) is written again from the
    # workspace, with nothing embedded; the other shards stay as they are.
    lost = sorted(after)[0]
    lost_rows = pq.read_metadata(shards / lost).num_rows
    (shards / lost).unlink()
    again = imgcluster.embed_folder(photos, config=CONFIG, workspace=workspace, shards_to=str(shards))
    assert again.n_embedded == 0 and (again.export["rows_written"], again.export["shards_written"]) == (lost_rows, 1)
    final = shard_files(shards)
    assert {name: final[name] for name in after if name != lost} == {n: a for n, a in after.items() if n != lost}
    assert_same_as_workspace(imgcluster.read_exported_shards(str(shards)), workspace, photos)

    nothing = imgcluster.embed_folder(photos, config=CONFIG, workspace=workspace, shards_to=str(shards))
    assert nothing.export["rows_written"] == 0 and shard_files(shards) == final

    # Another workspace (another machine) embedding the same images, in other batches, exports nothing the
    # shards already hold.
    other_batches = imgcluster.EmbedConfig(model=MODEL, commit_every=12)
    elsewhere = imgcluster.embed_folder(photos, config=other_batches, workspace=tmp_path / "ws2",
                                        shards_to=str(shards))
    assert elsewhere.n_embedded == 24 and elsewhere.export["rows_written"] == 0 and shard_files(shards) == final


def test_a_url_scheme_fsspec_does_not_know_fails_before_any_embedding(tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 2)
    with pytest.raises(imgcluster.ConfigError, match=r"Cannot write shards to 'nosuch://bucket/vectors': Protocol "
                                                     r"not known: nosuch\. Give a folder, or a URL such as file://"):
        imgcluster.embed_folder(photos, config=CONFIG, workspace=tmp_path / "ws", shards_to="nosuch://bucket/vectors")
    assert not (tmp_path / "ws").exists()  # not even scanned


def test_shards_of_another_model_are_refused_before_embedding(tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 2)
    shards = tmp_path / "shards"
    ShardExport(str(shards)).open("some-other-model", 4, {"h": "x.jpg"}).write(["h"], np.ones((1, 4)))
    with pytest.raises(imgcluster.ConfigError, match="holds embeddings of some-other-model.*its own --shards-to"):
        imgcluster.embed_folder(photos, config=CONFIG, workspace=tmp_path / "ws", shards_to=str(shards))
    for shard in shards.glob("part-*.parquet"):
        shard.unlink()
    after = imgcluster.embed_folder(photos, config=CONFIG, workspace=tmp_path / "ws", shards_to=str(shards))
    assert (after.n_cached, after.n_embedded) == (0, 2)  # the refused pass embedded nothing


def test_embed_help_shows_the_export_and_the_retry_bound():
    from typer.testing import CliRunner

    from imgcluster.cli import app

    result = CliRunner().invoke(app, ["embed", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--shards-to" in result.output and "--retries" in result.output
