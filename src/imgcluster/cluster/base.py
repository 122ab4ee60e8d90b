"""The contract every clusterer keeps."""

from __future__ import annotations

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
