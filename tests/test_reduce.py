"""reduce(): the neighbour graph both UMAP fits share, on collections of every size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import pairwise_distances

import imgcluster
from imgcluster.api import steps
from imgcluster.reduce import nearest_neighbors


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors in 64-d around 4 centres, as image embeddings are."""
    x, _ = make_blobs(n_samples=n, centers=4, n_features=64, cluster_std=2.0, random_state=seed)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_a_small_collection_builds_one_neighbour_graph_for_both_umap_fits(monkeypatch) -> None:
    # Below 4,096 points umap-learn would otherwise compute every pairwise distance through a
    # Python-level cosine: 25-35 s on 3,925 photos, against ~5 s with one shared graph.
    calls = []

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return nearest_neighbors(*args, **kwargs)

    monkeypatch.setattr(steps, "nearest_neighbors", counted)
    x = embeddings(300)
    reduction = imgcluster.reduce(x)
    assert calls == [300]
    space_knn = reduction.space_reducer.model_.knn_indices
    assert space_knn is not None and space_knn.shape == (300, 15)
    assert reduction.map_reducer.model_.knn_indices is space_knn  # the same graph, searched once
    assert reduction.space.shape == (300, 5) and reduction.map.shape == (300, 2)


def test_the_shared_graph_is_the_exact_neighbourhood_umap_would_find() -> None:
    x = embeddings(500, seed=1)
    indices, distances, index = nearest_neighbors(x, 15)
    exact = pairwise_distances(x, metric="cosine")
    expected = np.argsort(exact, axis=1)[:, :15]
    assert index is None
    assert all(set(found) == set(wanted) for found, wanted in zip(indices, expected))
    assert np.allclose(distances, np.take_along_axis(exact, indices, axis=1), atol=1e-5)
    assert (np.diff(distances, axis=1) >= 0).all()  # nearest first


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_graph_is_the_same_whatever_the_rows_reranked_at_a_time(monkeypatch, metric: str) -> None:
    # The re-ranking goes through the points in chunks small enough for the allocator to reuse one
    # block (1,000 rows at a time faulted 77 MB in again per chunk: 0.6 s of a 1,797-photo graph).
    from imgcluster import neighbours

    x = embeddings(257, seed=4)
    whole = nearest_neighbors(x, 15, metric)
    monkeypatch.setattr(neighbours, "RERANK_BLOCK_FLOATS", 15 * 64 * 7)  # 7 rows: a short last chunk
    assert neighbours.rerank_chunk(15, 64) == 7
    chunked = nearest_neighbors(x, 15, metric)
    assert np.array_equal(chunked[0], whole[0]) and np.array_equal(chunked[1], whole[1])
    assert (chunked[0][:, 0] == np.arange(257)).all()  # each point first in its own row
    exact = pairwise_distances(x, metric=metric)
    assert np.allclose(chunked[1], np.sort(exact, axis=1)[:, :15], atol=1e-4)


def test_the_projected_search_reranks_the_same_in_small_chunks(monkeypatch) -> None:
    # Beyond FULL_WIDTH_KNN_UP_TO points of more than 64-d the candidates come from a 64-d PCA
    # projection (3 x k of them), re-ranked at full width.
    from imgcluster import neighbours

    x, _ = make_blobs(n_samples=300, centers=5, n_features=96, cluster_std=3.0, random_state=5)
    x = x.astype(np.float32)
    monkeypatch.setattr(neighbours, "FULL_WIDTH_KNN_UP_TO", 100)
    whole = neighbours.knn_graph(x, 15)
    monkeypatch.setattr(neighbours, "RERANK_BLOCK_FLOATS", 45 * 96 * 11)  # 11 rows a chunk
    assert neighbours.rerank_chunk(45, 96) == 11
    chunked = neighbours.knn_graph(x, 15)
    assert np.array_equal(chunked[0], whole[0]) and np.array_equal(chunked[1], whole[1])
    assert (chunked[0][:, 0] == np.arange(300)).all()


def test_fewer_points_than_neighbours_give_a_graph_of_every_point() -> None:
    x = embeddings(6)
    indices, distances, _ = nearest_neighbors(x, 15)
    assert indices.shape == distances.shape == (6, 6)
    assert all(sorted(row) == list(range(6)) for row in indices)


@pytest.mark.parametrize("n", [3, 5, 10, 40])
def test_tiny_collections_reduce_the_same_way_twice(n: int) -> None:
    x = embeddings(n, seed=2)
    first = imgcluster.reduce(x)
    again = imgcluster.reduce(x)
    assert first.space.shape == (n, 5) and first.map.shape == (n, 2)
    assert np.isfinite(first.space).all() and np.isfinite(first.map).all()
    assert np.allclose(first.space, again.space, atol=1e-4) and np.allclose(first.map, again.map, atol=1e-4)


def test_same_seed_gives_the_same_clusters_through_the_shared_graph() -> None:
    x = embeddings(400, seed=3)
    first = imgcluster.cluster_points(imgcluster.reduce(x).space)
    again = imgcluster.cluster_points(imgcluster.reduce(x).space)
    assert np.array_equal(first.labels, again.labels)


def test_each_reducer_gets_only_the_settings_it_declares() -> None:
    from imgcluster.reduce import reducer_settings

    config = imgcluster.ReduceConfig(method="pca", map_method="umap", n_neighbors=30, map_min_dist=0.2)
    assert reducer_settings(config, "space") == {"seed": 0, "n_components": 5}
    assert reducer_settings(config, "map", knn=None) == {
        "seed": 0, "knn": None, "n_components": 2, "n_neighbors": 30, "metric": "cosine", "min_dist": 0.2,
        "n_epochs": 100}
    assert reducer_settings(imgcluster.ReduceConfig(method="none"), "space") == {"seed": 0}


def test_a_reduce_setting_no_chosen_reducer_takes_is_refused_unless_a_preset_set_it() -> None:
    from imgcluster.reduce import check_reduce_config

    check_reduce_config(imgcluster.ReduceConfig(method="pca", n_neighbors=30))  # the map's UMAP takes it
    with pytest.raises(imgcluster.ConfigError, match="^n_neighbors applies to umap, not pca; drop --set "
                                                     "reduce.n_neighbors or pick that reducer.$"):
        check_reduce_config(imgcluster.ReduceConfig(method="pca", map_method="pca", n_neighbors=30))
    with pytest.raises(imgcluster.ConfigError, match="^metric applies to tsne and umap, not pca"):
        check_reduce_config(imgcluster.ReduceConfig(method="pca", map_method="pca", metric="euclidean"))
    ifunny = imgcluster.config.apply_preset(imgcluster.RunConfig(), "ifunny").reduce
    check_reduce_config(dataclasses.replace(ifunny, method="pca", map_method="pca"), "ifunny")
