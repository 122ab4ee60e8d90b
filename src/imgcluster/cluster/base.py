"""The contract every clusterer keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

NOISE = -1  # label of points no cluster claims ("unclustered")


class Clusterer(Protocol):
    labels_: np.ndarray          # (n,) int, NOISE for unclustered
    probabilities_: np.ndarray   # (n,) membership probability in [0, 1]

    def fit(self, x: np.ndarray) -> "Clusterer": ...

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and membership probabilities for new points, without refitting."""
        ...

    def describe(self) -> dict[str, object]:
        """The parameters actually used, after automatic choices."""
        ...


def auto_min_cluster_size(n: int) -> int:
    """About 1% of the collection, at least 5 and never more than a third of it (never 2 on 3)."""
    return int(max(2, min(max(5, round(0.01 * n)), n // 3 if n >= 6 else 2)))


def assignment_margin(distances: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """Membership probability from distances (n, c) to c cluster centres: ``1 - d_own / d_other``.

    ``own`` (n,) is each point's own column; unset, it is the nearest centre. ``d_other`` is the
    nearest other centre. 1 deep inside a cluster, 0 on the border between two (and below the
    border, for a point closer to another centre than to its own); 1 when there is one centre.
    """
    n, c = distances.shape
    if c < 2:
        return np.ones(n)
    if own is None:
        two = np.partition(distances, 1, axis=1)[:, :2]
        mine, other = two[:, 0], two[:, 1]
    else:
        rows = np.arange(n)
        mine = distances[rows, own]
        others = distances.copy()
        others[rows, own] = np.inf
        other = others.min(axis=1)
    return np.clip(1.0 - mine / np.maximum(other, 1e-12), 0.0, 1.0)


def cluster_centroids(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids (c,), centroids (c, d)): each cluster's mean point, noise left out."""
    ids = np.unique(labels[labels != NOISE])
    if len(ids) == 0:
        return ids.astype(np.int64), np.empty((0, x.shape[1]))
    centroids = np.stack([np.asarray(x[labels == i], dtype=np.float64).mean(axis=0) for i in ids])
    return ids.astype(np.int64), centroids


def centroid_distances(x: np.ndarray, centroids: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distances (n, c) from points to centroids in ``metric`` (any scikit-learn pairwise metric)."""
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(np.asarray(x, dtype=np.float64), centroids, metric=metric)


def nearest_centroid(x: np.ndarray, ids: np.ndarray, centroids: np.ndarray,
                     metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Labels and margins (see ``assignment_margin``) of points assigned to their nearest centroid."""
    if len(ids) == 0:
        return np.full(len(x), NOISE, dtype=np.int64), np.zeros(len(x))
    distances = centroid_distances(x, centroids, metric)
    return ids[distances.argmin(axis=1)].astype(np.int64), assignment_margin(distances)


def centroid_membership(x: np.ndarray, labels: np.ndarray, ids: np.ndarray, centroids: np.ndarray,
                        metric: str = "euclidean") -> np.ndarray:
    """Margins of fitted points against their *own* cluster's centroid (0 for noise), so a point that
    a linkage or graph cut put in a cluster whose centre is not its nearest gets a low probability."""
    probabilities = np.zeros(len(x))
    clustered = labels != NOISE
    if len(ids) == 0 or not clustered.any():
        return probabilities
    distances = centroid_distances(x[clustered], centroids, metric)
    probabilities[clustered] = assignment_margin(distances, np.searchsorted(ids, labels[clustered]))
    return probabilities


SILHOUETTE_BLOCK_FLOATS = 2_000_000  # distances handled at a time: a block of rows, widened to float64 (16 MB)
SILHOUETTE_MOST_CLUSTERS = 64  # beyond, scikit-learn's loop over rows is the faster of the two


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette of ``labels`` (m,) from the points' finite distances (m, m, zero on the
    diagonal), as scikit-learn's ``silhouette_score(distances, labels, metric="precomputed")`` gives
    it: in float32 for float32 distances (the same value, bit for bit), else in float64 (the sums
    added in another order: within 1e-16); a point alone in its cluster scores 0. Needs 2 to m - 1
    distinct labels (any values).

    One matrix product per block of rows instead of scikit-learn's Python loop over the rows, which
    took 1.3 s of auto mode's search over 2,500 points of the photo crops (40 candidates). Its cost
    grows with the clusters, so above ``SILHOUETTE_MOST_CLUSTERS`` scikit-learn's own is used."""
    codes = _cluster_codes(labels)
    if codes.max(initial=-1) + 1 > SILHOUETTE_MOST_CLUSTERS:
        from sklearn.metrics import silhouette_score

        return float(silhouette_score(distances, labels, metric="precomputed"))
    return _silhouette(lambda rows: distances[rows], codes,
                       np.dtype(np.float32) if distances.dtype == np.float32 else np.dtype(np.float64))


def euclidean_silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    """``silhouette`` of ``points`` (m, d) under Euclidean distance, as ``silhouette_score(points,
    labels)`` gives it, without the (m, m) matrix: a block of rows of distances at a time
    (scikit-learn's distances, so the same figure; the full matrix of 4,000 points is 64 MB of new
    memory, 0.1-0.7 s on this machine before any arithmetic)."""
    from sklearn.metrics.pairwise import euclidean_distances

    codes = _cluster_codes(labels)
    if codes.max(initial=-1) + 1 > SILHOUETTE_MOST_CLUSTERS:
        from sklearn.metrics import silhouette_score

        return float(silhouette_score(points, labels))

    def distances(rows: slice) -> np.ndarray:
        block = euclidean_distances(points[rows], points)
        own = np.arange(rows.start, rows.stop)
        block[own - rows.start, own] = 0.0  # as scikit-learn sets a point's own distance
        return block

    return _silhouette(distances, codes, np.dtype(np.float32) if points.dtype == np.float32 else np.dtype(np.float64))


def _cluster_codes(labels: np.ndarray) -> np.ndarray:
    """Labels as 0..c-1 (any label values, in sorted order)."""
    return np.unique(labels, return_inverse=True)[1].ravel()


def _silhouette(distances: Callable[[slice], np.ndarray], codes: np.ndarray, dtype: np.dtype) -> float:
    """The silhouette from ``distances(rows)``, each block of rows' distances to every point."""
    from sklearn.utils import gen_batches

    counts = np.bincount(codes)
    n, c = len(codes), len(counts)
    if not 2 <= c <= n - 1:
        raise ValueError(f"the silhouette needs 2 to {n - 1} clusters of {n} points; got {c}")
    members = np.zeros((n, c))
    members[np.arange(n), codes] = 1.0
    sums = np.empty((n, c), dtype=dtype)
    for rows in gen_batches(n, max(1, SILHOUETTE_BLOCK_FLOATS // max(n, 1))):
        sums[rows] = np.asarray(distances(rows), dtype=np.float64) @ members
    if not np.isfinite(sums).all():  # a NaN or infinite distance would otherwise score its point 0
        raise ValueError("the silhouette needs finite distances; some are NaN or infinite")
    every = np.arange(n)
    within = sums[every, codes]
    sums[every, codes] = np.inf
    sums /= counts
    between = sums.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        within /= counts[codes] - 1
        scores = between - within
        scores /= np.maximum(within, between)
    return float(np.mean(np.nan_to_num(scores)))
