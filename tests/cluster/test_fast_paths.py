"""The search's own fast paths give scikit-learn's answers: its silhouette, its k-means++ seeds and
the same neighbour graph, whatever the block size. Auto mode's choice depends on these values to
the fourth decimal, so they are compared exactly, not approximately."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.metrics import pairwise_distances, silhouette_score

from imgcluster.cluster.base import euclidean_silhouette, silhouette
from imgcluster.cluster.kmeans import KMeansClusterer, plus_plus_seeds

auto = importlib.import_module("imgcluster.cluster.auto")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silhouette_is_scikit_learns_to_the_last_digit(dtype) -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(5, 300))
        x = rng.normal(size=(n, int(rng.integers(1, 6)))).astype(dtype)
        # Labels of any value, some clusters of one point (they score 0).
        labels = rng.integers(0, int(rng.integers(2, min(n - 1, 25) + 1)), size=n) * 7 - 3
        if not 2 <= len(np.unique(labels)) <= n - 1:
            continue
        distances = pairwise_distances(x)
        assert silhouette(distances, labels) == pytest.approx(
            silhouette_score(distances, labels, metric="precomputed"), abs=1e-15)


def test_euclidean_silhouette_in_blocks_is_scikit_learns(monkeypatch) -> None:
    monkeypatch.setattr(importlib.import_module("imgcluster.cluster.base"), "SILHOUETTE_BLOCK_FLOATS", 5_000)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(700, 5)).astype(np.float32)
    labels = rng.integers(0, 9, size=700)
    assert euclidean_silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-15)
    with pytest.raises(ValueError, match="2 to 699 clusters"):
        euclidean_silhouette(x, np.zeros(700, dtype=int))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plus_plus_seeds_are_scikit_learns(dtype) -> None:
    rng = np.random.default_rng(2)
    for trial in range(30):
        n, d, k = int(rng.integers(20, 3000)), int(rng.integers(1, 30)), int(rng.integers(2, 40))
        x = (rng.normal(size=(n, d)) * rng.uniform(0.01, 100)).astype(dtype)
        if trial % 5 == 0:
            x[: n // 3] = x[0]  # many identical points
        expected, _ = kmeans_plusplus(x, k, random_state=np.random.RandomState(trial))
        assert np.array_equal(plus_plus_seeds(x, k, np.random.RandomState(trial)), expected)


def test_kmeans_with_these_seeds_gives_scikit_learns_clusters() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(loc, 0.6, size=(300, 5)) for loc in range(6)]).astype(np.float32)
    for k in (2, 6, 11):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = KMeans(n_clusters=k, random_state=4, n_init=10).fit(x)
        fitted = KMeansClusterer(k=k, seed=4).fit(x)
        assert fitted.restarts_ == 10
        assert np.array_equal(fitted.labels_, expected.labels_)


@pytest.mark.parametrize("cosine", [True, False])
def test_the_neighbour_graph_is_the_same_in_blocks(monkeypatch, cosine) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 40)).astype(np.float32)
    whole = auto._neighbor_graph(x, cosine)
    monkeypatch.setattr(auto, "GRAPH_BLOCK_FLOATS", 7 * 500)  # 7 rows at a time
    rows, cols = auto._neighbor_graph(x, cosine)
    assert np.array_equal(rows, whole[0]) and np.array_equal(cols, whole[1])
    # Each point links to its 10 nearest others (both ways), never to itself.
    distances = pairwise_distances(x, metric="cosine" if cosine else "euclidean")
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :auto.GRAPH_NEIGHBORS]
    links = set(zip(rows.tolist(), cols.tolist()))
    assert all((i, int(j)) in links and (int(j), i) in links for i in range(500) for j in nearest[i])
    assert not any(i == j for i, j in links)
