"""Agglomerative (hierarchical) clustering, scikit-learn: merges the closest clusters bottom-up until
``k`` remain or the next merge would be farther than ``distance_threshold``. No noise.

Membership probability is the centroid margin ``1 - d_own / d_other`` (see
``base.assignment_margin``), measured from each point to its own cluster's mean point; new points go
to the nearest centroid. Deterministic: the seed is accepted for the common signature only.
"""

from __future__ import annotations

import logging
import warnings
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..params import Interval, Options, Parameters, require_fitted
from .base import centroid_membership, cluster_centroids, nearest_centroid

log = logging.getLogger(__name__)

LINKAGES = ("ward", "average", "complete")
METRICS = ("euclidean", "cosine")
# Without a connectivity graph the merge tree needs all n²/2 pairwise distances: 5,000 points are
# ~100 MB, 50,000 would be ~10 GB. Above this, merges are restricted to k-NN graph edges.
CONNECTIVITY_ABOVE = 5_000
CONNECTIVITY_NEIGHBORS = 15


class AgglomerativeClusterer:
    """Hierarchical clustering into ``k`` clusters, or cut at ``distance_threshold``.

    ``linkage`` is ward (compact clusters, euclidean only), average or complete (these also take
    ``metric="cosine"``). Above 5,000 points merges follow a 15-NN graph so memory stays linear.
    """

    parameters: ClassVar[Parameters] = {
        "k": [Interval(int, 1), None], "linkage": [Options(LINKAGES)], "metric": [Options(METRICS)],
        "distance_threshold": [Interval(float, 0, open_low=True), None], "seed": [Interval(int, 0)]}

    def __init__(self, k: int | None = None, linkage: str = "ward", metric: str = "euclidean",
                 distance_threshold: float | None = None, seed: int = 0):
        if k is None and distance_threshold is None:
            raise ConfigError("agglomerative needs k, the number of clusters: pass --k N (or distance_threshold=D "
                              "to cut the merge tree at a distance, or use --method hdbscan, which finds the "
                              "number itself).")
        if k is not None and distance_threshold is not None:
            raise ConfigError(f"agglomerative takes k or distance_threshold, not both; got k={k} and "
                              f"distance_threshold={distance_threshold}. Leave one unset.")
        if linkage not in LINKAGES:
            raise ConfigError(f"linkage must be one of {', '.join(LINKAGES)}; got {linkage!r}.")
        if metric not in METRICS:
            raise ConfigError(f"agglomerative metric must be one of {', '.join(METRICS)}; got {metric!r}.")
        if linkage == "ward" and metric != "euclidean":
            raise ConfigError(f"ward linkage works on euclidean distances only; got metric={metric!r}. "
                              "Use linkage='average' (or 'complete') with cosine.")
        if distance_threshold is not None and distance_threshold <= 0:
            raise ConfigError(f"distance_threshold must be positive; got {distance_threshold}.")
        self.k, self.linkage, self.metric = k, linkage, metric
        self.distance_threshold, self.seed = distance_threshold, seed

    def fit(self, x: np.ndarray) -> "AgglomerativeClusterer":
        from sklearn.cluster import AgglomerativeClustering

        n = len(x)
        self.connectivity_ = None
        if self.k is not None:
            self.k_ = max(1, min(self.k, n))
            if self.k_ < self.k:
                log.warning("k=%d is more than the %d images; using k=%d", self.k, n, self.k_)
        if n < 2:  # scikit-learn needs two points to merge; one point is one cluster, as with kmeans
            self.labels_ = np.zeros(n, dtype=np.int64)
        else:
            connectivity = None
            if n > CONNECTIVITY_ABOVE:
                from sklearn.neighbors import kneighbors_graph

                connectivity = kneighbors_graph(x, n_neighbors=min(CONNECTIVITY_NEIGHBORS, n - 1),
                                                metric=self.metric, include_self=False)
                self.connectivity_ = f"{CONNECTIVITY_NEIGHBORS}-nn graph"
            model = AgglomerativeClustering(
                n_clusters=self.k_ if self.k is not None else None, distance_threshold=self.distance_threshold,
                linkage=self.linkage, metric=self.metric, connectivity=connectivity)
            with warnings.catch_warnings():
                # A k-NN graph of separate groups has several components; scikit-learn joins them
                # itself (and says so), which is what we want.
                warnings.filterwarnings("ignore", message=".*connected components.*")
                model.fit(np.asarray(x, dtype=np.float64))
            self.labels_ = model.labels_.astype(np.int64)
        self.k_ = int(len(np.unique(self.labels_)))
        self.ids_, self.centroids_ = cluster_centroids(x, self.labels_)
        self.probabilities_ = centroid_membership(x, self.labels_, self.ids_, self.centroids_, self.metric)
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        require_fitted(self, "centroids_")
        return nearest_centroid(x, self.ids_, self.centroids_, self.metric)

    def describe(self) -> dict[str, object]:
        return {"method": "agglomerative", "k": getattr(self, "k_", self.k), "linkage": self.linkage,
                "metric": self.metric, "distance_threshold": self.distance_threshold,
                "connectivity": getattr(self, "connectivity_", None)}
