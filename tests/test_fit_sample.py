"""Large collections: fit on a sample, file the rest with the predictor; results cover every image."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import imgcluster


def unit_blobs(n: int, centres: int = 6, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, d))
    truth = rng.integers(0, centres, n)
    x = middle[truth] + rng.normal(scale=0.25, size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


def test_sampled_fit_files_every_point_consistently() -> None:
    x, truth = unit_blobs(3000)
    reduce_config = imgcluster.ReduceConfig(fit_sample=800)
    reduction, clustering = imgcluster.fit_clusters(x, reduce_config, imgcluster.ClusterConfig())
    assert clustering.labels.shape == (3000,) and reduction.map.shape == (3000, 2)
    assert reduction.space.shape == (3000, 5)
    assert clustering.params["fit_sample"] == 800 and clustering.params["filed_by_predictor"] == 2200
    assert adjusted_rand_score(truth, clustering.labels) > 0.9
    assert np.isfinite(reduction.map).all() and np.isfinite(reduction.space).all()


def test_no_sampling_below_the_threshold() -> None:
    x, _ = unit_blobs(300)
    _, clustering = imgcluster.fit_clusters(x, imgcluster.ReduceConfig(fit_sample=1000))
    assert "fit_sample" not in clustering.params


def test_cluster_sizes_given_for_the_collection_are_scaled_to_the_sample() -> None:
    x, truth = unit_blobs(3000)
    config = imgcluster.ClusterConfig(min_cluster_size=300)
    _, clustering = imgcluster.fit_clusters(x, imgcluster.ReduceConfig(fit_sample=800), config)
    assert clustering.params["min_cluster_size"] == 300 and clustering.params["min_cluster_size_in_sample"] == 80
    assert adjusted_rand_score(truth, clustering.labels) > 0.9  # 6 groups of ~500 survive a 300 minimum


def test_sharded_vectors_cluster_as_the_same_array_in_memory(tmp_path, monkeypatch) -> None:
    """The large-collection path: a sampled fit, the rest read from float16 shards a batch at a time
    (the batch shrunk here so that several batches cross shard boundaries), never all at once."""
    x, truth = unit_blobs(3000)
    x = x.astype(np.float16)
    for i, start in enumerate(range(0, 3000, 256)):
        np.save(tmp_path / f"shard-{i:03d}.npy", x[start:start + 256])
    vectors = imgcluster.ShardedVectors.from_folder(tmp_path)
    monkeypatch.setattr("imgcluster.api.steps._FILE_BATCH", 500)
    monkeypatch.setattr(imgcluster.ShardedVectors, "__array__", lambda *_: pytest.fail("read every row at once"))
    config = imgcluster.ReduceConfig(fit_sample=800)
    reduction, clustering = imgcluster.fit_clusters(vectors, config)
    in_memory, expected = imgcluster.fit_clusters(x.astype(np.float32), config)
    assert clustering.params["filed_by_predictor"] == 2200
    assert (clustering.how == "filed").sum() == 2200 and (clustering.how == "fit").sum() == 800
    assert np.array_equal(clustering.labels, expected.labels)
    assert np.allclose(reduction.map, in_memory.map) and np.allclose(reduction.space, in_memory.space)
    assert adjusted_rand_score(truth, clustering.labels) > 0.9
