"""Embeddings in float16 .npy shards, read through memory maps: the rows asked for, as float32."""

from __future__ import annotations

import numpy as np
import pytest

import imgcluster


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 16)).astype(np.float16)
    paths = []
    for i, start in enumerate(range(0, 1000, 300)):  # 300, 300, 300, 100 rows
        paths.append(tmp_path / f"shard-{i}.npy")
        np.save(paths[-1], x[start:start + 300])
    return paths, x.astype(np.float32)


def test_rows_read_match_the_stacked_shards(shards) -> None:
    paths, x = shards
    vectors = imgcluster.ShardedVectors(paths)
    assert len(vectors) == 1000 and vectors.shape == (1000, 16) and vectors.stored_dtype == "float16"
    rows = np.array([999, 0, 299, 300, 300, 42, -1])  # any order, repeats, shard edges, negative
    for key in (rows, slice(250, 650), slice(None, None, 7), x[:, 0] > 0):
        got = vectors[key]
        assert got.dtype == np.float32 and np.array_equal(got, x[key])
    assert np.array_equal(vectors[5], x[5])
    assert np.array_equal(np.asarray(vectors), x)
    assert np.array_equal(np.concatenate([block for _, block in vectors.batches(128)]), x)


def test_shards_of_different_widths_are_refused(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 4), dtype=np.float16))
    np.save(tmp_path / "b.npy", np.zeros((3, 5), dtype=np.float16))
    with pytest.raises(ValueError, match="different widths"):
        imgcluster.ShardedVectors.from_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="No \\*.npy shard files"):
        imgcluster.ShardedVectors.from_folder(tmp_path / "empty")


def test_a_view_with_stored_rows_reads_them_in_its_own_order(shards) -> None:
    paths, x = shards
    picked = np.random.default_rng(1).permutation(1000)[:700]  # a run's images, in catalogue order
    vectors = imgcluster.ShardedVectors(paths, stored_rows=picked)
    assert vectors.shape == (700, 16)
    assert np.array_equal(np.asarray(vectors), x[picked])
    assert np.array_equal(vectors[np.array([5, 0, 699])], x[picked[[5, 0, 699]]])
    assert np.array_equal(vectors[100:200], x[picked[100:200]])
    with pytest.raises(IndexError, match="outside"):
        imgcluster.ShardedVectors(paths, stored_rows=np.array([0, 1000]))


def test_picking_rows_of_named_shards(shards) -> None:
    paths, x = shards
    view = imgcluster.ShardedVectors.picking(paths, np.array([3, 0, 1]), np.array([99, 0, 5]))
    assert np.array_equal(view[:], x[[999, 0, 305]])
    with pytest.raises(IndexError, match="beyond the end"):
        imgcluster.ShardedVectors.picking(paths, np.array([3]), np.array([100]))


def test_a_subset_of_a_view_is_still_a_view(shards) -> None:
    paths, x = shards
    picked = np.arange(999, -1, -3)
    view = imgcluster.ShardedVectors(paths, stored_rows=picked)
    part = view.subset(np.array([0, 2, -1]))
    assert isinstance(part, imgcluster.ShardedVectors)
    assert np.array_equal(part[:], x[picked[[0, 2, -1]]])
    assert np.array_equal(imgcluster.ShardedVectors(paths).subset(np.array([7]))[:], x[[7]])
