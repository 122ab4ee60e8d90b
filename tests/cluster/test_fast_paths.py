"""The search's own fast paths give scikit-learn's answers: its silhouette, its k-means++ seeds and
the same neighbour graph, whatever the block size. Auto mode's choice depends on these values to
the fourth decimal, so they are compared exactly (float32, as auto mode measures), float64 sums
within 1e-15 (added in another order)."""

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
        expected = silhouette_score(distances, labels, metric="precomputed")
        if dtype is np.float32:
            assert silhouette(distances, labels) == expected
        else:
            assert silhouette(distances, labels) == pytest.approx(expected, abs=1e-15)


def test_silhouette_refuses_what_it_cannot_score_and_hands_many_clusters_to_scikit_learn() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    distances = pairwise_distances(x)
    distances[3, 7] = np.nan
    with pytest.raises(ValueError, match="finite"):
        silhouette(distances, rng.integers(0, 4, size=400))
    labels = np.arange(400) % 150  # over SILHOUETTE_MOST_CLUSTERS
    distances = pairwise_distances(x)
    assert silhouette(distances, labels) == silhouette_score(distances, labels, metric="precomputed")
    assert euclidean_silhouette(x, labels) == silhouette_score(x, labels)


def test_euclidean_silhouette_in_blocks_is_scikit_learns(monkeypatch) -> None:
    monkeypatch.setattr(importlib.import_module("imgcluster.cluster.base"), "SILHOUETTE_BLOCK_FLOATS", 5_000)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(700, 5)).astype(np.float32)
    labels = rng.integers(0, 9, size=700)
    assert euclidean_silhouette(x, labels) == silhouette_score(x, labels)
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


def test_plus_plus_seeds_on_large_embeddings_are_scikit_learns() -> None:
    # 11,000 x 1,280: scikit-learn's batches differ between one point and a centre's trials, and
    # the float64 copy of the points is over what the seeding keeps between calls.
    x = np.random.default_rng(5).normal(size=(11_000, 1280)).astype(np.float32)
    expected, _ = kmeans_plusplus(x, 3, random_state=np.random.RandomState(0))
    assert np.array_equal(plus_plus_seeds(x, 3, np.random.RandomState(0)), expected)


def test_kmeans_with_these_seeds_gives_scikit_learns_clusters() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(loc, 0.6, size=(100, 5)) for loc in range(6)]).astype(np.float32)
    for k in (2, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = KMeans(n_clusters=k, random_state=4, n_init=10).fit(x)
        fitted = KMeansClusterer(k=k, seed=4).fit(x)
        assert fitted.restarts_ == 10
        assert np.array_equal(fitted.labels_, expected.labels_)


def _whole_matrix_graph(x: np.ndarray, cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    """The graph as auto mode made it before blocks: the whole distance matrix."""
    from scipy import sparse

    n, k = len(x), auto.GRAPH_NEIGHBORS
    distances = pairwise_distances(x, metric="cosine" if cosine else "euclidean")
    np.fill_diagonal(distances, np.inf)
    nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
    links = sparse.coo_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), nearest.ravel())), shape=(n, n)).tocsr()
    links = (links + links.T).tocoo()
    return links.row, links.col


@pytest.mark.parametrize("cosine", [True, False])
def test_the_neighbour_graph_is_the_whole_matrixs_in_blocks(monkeypatch, cosine) -> None:
    x = np.random.default_rng(4).normal(size=(500, 40)).astype(np.float32)
    whole = _whole_matrix_graph(x, cosine)
    monkeypatch.setattr(auto, "GRAPH_BLOCK_FLOATS", 7 * 500)  # 7 rows at a time
    rows, cols = auto._neighbor_graph(x, cosine)
    assert np.array_equal(rows, whole[0]) and np.array_equal(cols, whole[1])


def test_near_duplicates_in_blocks_still_link_each_point_to_its_nearest(monkeypatch) -> None:
    # 100 groups of 25 near-duplicates: which of several equally near points a block-wise matrix
    # ranks first can change with the block's shape (BLAS rounds a 7-row product another way), so
    # what must hold is what holds for every valid graph: each link joins a point to one of its k
    # nearest, within float32 rounding.
    rng = np.random.default_rng(4)
    x = (np.repeat(rng.normal(size=(100, 64)) * 30, 25, axis=0)
         + 1e-5 * rng.normal(size=(2500, 64))).astype(np.float32)
    monkeypatch.setattr(auto, "GRAPH_BLOCK_FLOATS", 7 * 2500)
    rows, cols = auto._neighbor_graph(x, True)
    distances = pairwise_distances(x.astype(np.float64), metric="cosine")
    np.fill_diagonal(distances, np.inf)
    kth = np.sort(distances, axis=1)[:, auto.GRAPH_NEIGHBORS - 1]
    assert not (rows == cols).any()
    near = (distances[rows, cols] <= kth[rows] + 1e-6) | (distances[cols, rows] <= kth[cols] + 1e-6)
    assert near.all()
    assert (np.bincount(rows, minlength=2500) >= auto.GRAPH_NEIGHBORS).all()


def test_hdbscan_settings_sharing_a_kept_tree_give_the_labels_of_their_own(tmp_path) -> None:
    from sklearn.datasets import make_blobs

    from imgcluster.cluster.hdbscan import HdbscanClusterer

    x, _ = make_blobs(n_samples=[300, 120, 60, 25], n_features=5, cluster_std=0.8, random_state=7)
    for size in (5, 12, 30, 60):
        for selection in ("eom", "leaf"):
            alone = HdbscanClusterer(min_cluster_size=size, min_samples=5, cluster_selection_method=selection).fit(x)
            shared = HdbscanClusterer(min_cluster_size=size, min_samples=5, cluster_selection_method=selection).fit(
                x, tree_cache=str(tmp_path), labels_only=True)
            assert np.array_equal(shared.labels_, alone.labels_)
            assert np.array_equal(shared.probabilities_, alone.probabilities_)
    assert any(tmp_path.rglob("output.pkl"))  # hdbscan kept the tree there (joblib's cache)


@pytest.mark.parametrize("n", [1, 1_797, 20_000, 20_001])
def test_the_predictors_mean_direction_is_that_of_its_sample_to_the_last_digit(n: int) -> None:
    """Measured without copying the rows where every row is used; the same float64 sums as of a copy."""
    from imgcluster.cluster.predictor import MEAN_SAMPLE, _sample_mean

    x = np.random.default_rng(n).normal(size=(n, 48)).astype(np.float32)
    rows = np.sort(np.random.default_rng(3).choice(n, size=min(n, MEAN_SAMPLE), replace=False))
    assert np.array_equal(_sample_mean(x, seed=3), np.asarray(x[rows], dtype=np.float64).mean(axis=0))
