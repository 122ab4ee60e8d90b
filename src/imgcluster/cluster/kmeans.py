"""k-means (scikit-learn): exactly ``k`` clusters, no noise."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import assignment_margin

log = logging.getLogger(__name__)


class KMeansClusterer:
    """k-means with k-means++ seeding. The membership probability is the assignment margin
    ``1 - d_nearest / d_second``: 1 deep inside a cluster, 0 on the border between two."""

    def __init__(self, k: int | None = None, seed: int = 0, **_: Any):
        if k is None:
            raise ConfigError("kmeans needs k, the number of clusters: pass --k N (or use --method hdbscan, "
                              "which finds the number itself).")
        self.k, self.seed = k, seed

    def fit(self, x: np.ndarray) -> "KMeansClusterer":
        from sklearn.cluster import KMeans

        self.k_ = max(1, min(self.k, len(x)))
        if self.k_ < self.k:
            log.warning("k=%d is more than the %d images; using k=%d", self.k, len(x), self.k_)
        self.model_ = KMeans(n_clusters=self.k_, random_state=self.seed, n_init="auto").fit(x)
        self.labels_ = self.model_.labels_.astype(np.int64)
        self.probabilities_ = assignment_margin(self.model_.transform(x))
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances = self.model_.transform(x)
        return distances.argmin(axis=1).astype(np.int64), assignment_margin(distances)

    def describe(self) -> dict[str, object]:
        return {"method": "kmeans", "k": getattr(self, "k_", self.k), "seed": self.seed}
