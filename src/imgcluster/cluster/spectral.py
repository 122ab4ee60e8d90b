"""Spectral clustering (scikit-learn) on a k-nearest-neighbour graph: exactly ``k`` clusters, no noise.

Follows the shape of the data rather than distances to a centre, so it separates curved or
elongated groups that k-means cuts across. Membership probability is the centroid margin
``1 - d_own / d_other`` (see ``base.assignment_margin``) against each point's own cluster's mean
point; new points go to the nearest centroid, as the graph cannot place points it was not built on.
"""

from __future__ import annotations

import logging
import warnings
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..params import Interval, Parameters, require_fitted
from .base import centroid_membership, cluster_centroids, nearest_centroid

log = logging.getLogger(__name__)


class SpectralClusterer:
    """Spectral clustering of the ``n_neighbors``-NN affinity graph into ``k`` clusters; the labels
    are read off the spectral embedding with k-means seeded by ``seed``."""

    parameters: ClassVar[Parameters] = {"k": [Interval(int, 1), None], "n_neighbors": [Interval(int, 2)],
                                        "seed": [Interval(int, 0)]}

    def __init__(self, k: int | None = None, n_neighbors: int = 10, seed: int = 0):
        if k is None:
            raise ConfigError("spectral needs k, the number of clusters: pass --k N (or use --method hdbscan, "
                              "which finds the number itself).")
        if n_neighbors < 2:
            raise ConfigError(f"n_neighbors must be at least 2; got {n_neighbors}.")
        self.k, self.n_neighbors, self.seed = k, n_neighbors, seed

    def fit(self, x: np.ndarray) -> "SpectralClusterer":
        from sklearn.cluster import SpectralClustering

        n = len(x)
        self.k_ = max(1, min(self.k, n))
        if self.k_ < self.k:
            log.warning("k=%d is more than the %d images; using k=%d", self.k, n, self.k_)
        self.n_neighbors_ = max(1, min(self.n_neighbors, n - 1))
        if self.k_ == 1 or self.k_ == n:
            # Nothing to cut: one cluster, or one point per cluster (the eigensolver needs k < n).
            self.labels_ = np.zeros(n, dtype=np.int64) if self.k_ == 1 else np.arange(n, dtype=np.int64)
        else:
            model = SpectralClustering(n_clusters=self.k_, affinity="nearest_neighbors",
                                       n_neighbors=self.n_neighbors_, random_state=self.seed)
            with warnings.catch_warnings():
                # Well-separated groups give a disconnected graph; its components are then the
                # clusters, which is the answer we want, not a problem to report.
                warnings.filterwarnings("ignore", message=".*not fully connected.*")
                model.fit(np.asarray(x, dtype=np.float64))
            self.labels_ = model.labels_.astype(np.int64)
        self.ids_, self.centroids_ = cluster_centroids(x, self.labels_)
        self.probabilities_ = centroid_membership(x, self.labels_, self.ids_, self.centroids_)
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        require_fitted(self, "centroids_")
        return nearest_centroid(x, self.ids_, self.centroids_)

    def describe(self) -> dict[str, object]:
        return {"method": "spectral", "k": getattr(self, "k_", self.k),
                "n_neighbors": getattr(self, "n_neighbors_", self.n_neighbors), "seed": self.seed}
