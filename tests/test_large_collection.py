"""A collection too big to hold its embeddings in memory: the `cluster` job reads them from the
workspace's float16 shards as it goes, with the same results as the in-memory path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster import neighbours
from imgcluster.store import Workspace

from .conftest import write_photos


def test_the_job_reads_a_large_collection_from_the_shards_with_the_same_results(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    folder = tmp_path / "photos"
    paths = write_photos(folder, 120)
    config = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(fit_sample=80))
    in_memory = imgcluster.cluster(folder, config=config, run_key="in-memory")

    # Every stage now gets a view on the shards, which refuses to be read whole; the predictor's
    # index takes the projected + 8-bit re-ranking form it has at a million images.
    monkeypatch.setattr("imgcluster.api.steps.IN_MEMORY_UP_TO", 50)
    monkeypatch.setattr("imgcluster.api.steps._FILE_BATCH", 16)
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 50)
    monkeypatch.setattr(neighbours, "ADD_BATCH", 32)
    monkeypatch.setattr(neighbours, "FP16_REFINE_UP_TO", 0)  # the 8-bit store of a million images
    monkeypatch.setattr(imgcluster.ShardedVectors, "__array__", lambda *_: pytest.fail("read every row at once"))
    from_shards = imgcluster.cluster(folder, config=config, run_key="from-shards")

    assert from_shards.record.as_info()["embedding"] == {"new": 0, "cached": 120}
    assert [r.path for r in from_shards.images] == [r.path for r in in_memory.images]
    assert np.array_equal(from_shards.assignments.clusters, in_memory.assignments.clusters)
    # Filing batch sizes differ, so sums round differently and a near-tie among neighbours may flip.
    spread = np.ptp(in_memory.assignments.x)
    assert np.allclose(from_shards.assignments.x, in_memory.assignments.x, atol=0.01 * spread)
    assert {c: n.name for c, n in from_shards.names.items()} == {c: n.name for c, n in in_memory.names.items()}

    predictor = imgcluster.load_predictor("from-shards", path=folder)
    assert predictor.predictor.describe()["index"] == "IndexRefine"
    filed = predictor.predict_files([str(p) for p in paths[:20]])
    stored = dict(zip([r.path for r in in_memory.images], in_memory.assignments.clusters.tolist()))
    assert [f.cluster for f in filed] == [stored[str(p)] for p in paths[:20]]


def test_embeddings_are_stored_as_float16_and_read_as_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((10, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hashes = [f"h{i}" for i in range(10)]
    with Workspace.open(tmp_path / "ws") as ws:
        ws.save_batch("m", hashes[:6], vectors[:6])
        ws.save_batch("m", hashes[6:], vectors[6:])
        shards = sorted((ws.path / "vectors").rglob("*.npy"))
        assert len(shards) == 2 and all(np.load(s).dtype == np.float16 for s in shards)
        order = hashes[::-1]
        loaded = ws.load_embeddings("m", order)
        view = ws.embeddings_view("m", order)
    assert loaded.dtype == np.float32 and np.allclose(loaded, vectors[::-1], atol=1e-3)
    assert np.array_equal(view[:], loaded) and np.array_equal(view[[0, 9]], loaded[[0, 9]])
    cosine = (loaded * vectors[::-1]).sum(axis=1)
    assert (cosine > 0.999).all()  # float16 keeps cosines to ~2e-4 at d=32, less at real widths
