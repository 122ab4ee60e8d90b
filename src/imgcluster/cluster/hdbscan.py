"""HDBSCAN (the hdbscan package): finds the number of clusters itself, marks noise, gives soft
membership probabilities and assigns new points with ``approximate_predict``."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from ..params import Interval, Options, Parameters, require_fitted
from .base import NOISE, auto_min_cluster_size
from .separated import carve_separated, predict_carved


class HdbscanClusterer:
    """Density clustering. ``min_cluster_size=None`` picks about 1% of the points."""

    parameters: ClassVar[Parameters] = {
        "min_cluster_size": [Interval(int, 2), None], "min_samples": [Interval(int, 1), None],
        "cluster_selection_method": [Options(("eom", "leaf"))], "alpha": [Interval(float, 0, open_low=True)],
        "seed": [Interval(int, 0)], "max_cluster_size": [Interval(int, 2), None]}

    def __init__(self, min_cluster_size: int | None = None, min_samples: int | None = None,
                 cluster_selection_method: str = "eom", alpha: float = 1.0, seed: int = 0,
                 max_cluster_size: int | None = None):
        self.min_cluster_size, self.min_samples, self.max_cluster_size = min_cluster_size, min_samples, max_cluster_size
        self.cluster_selection_method, self.alpha, self.seed = cluster_selection_method, alpha, seed

    def fit(self, x: np.ndarray, *, tree_cache: str | None = None, labels_only: bool = False) -> "HdbscanClusterer":
        """Fit on ``x`` (n, d). For a search over settings (auto mode's grid): ``tree_cache``, a folder
        where hdbscan keeps the single-linkage tree it builds (it depends on the points and
        ``min_samples`` only, so fits that differ in ``min_cluster_size`` or the selection method
        load it instead of building it again); ``labels_only`` skips the prediction data, so
        ``predict`` cannot be used after."""
        import hdbscan

        n = len(x)
        self.carved_ = []  # a new fit forgets an earlier carving (predict follows carved_)
        self.__dict__.pop("_renumbered", None)
        self.__dict__.pop("_fit_space", None)
        self.min_cluster_size_ = self.min_cluster_size or auto_min_cluster_size(n)
        # min_samples below min_cluster_size keeps fewer points as noise; the cap keeps it
        # meaningful on large collections.
        self.min_samples_ = self.min_samples or max(1, min(self.min_cluster_size_, 10))
        if n < 2 or n < self.min_cluster_size_:
            self.model_ = None
            self.labels_ = np.full(n, NOISE, dtype=np.int64)
            self.probabilities_ = np.zeros(n)
            return self
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = hdbscan.HDBSCAN(
                min_cluster_size=self.min_cluster_size_, min_samples=min(self.min_samples_, n - 1),
                cluster_selection_method=self.cluster_selection_method, alpha=self.alpha,
                max_cluster_size=self.max_cluster_size or 0,  # hdbscan's 0 means no limit
                prediction_data=not labels_only,
                **({"memory": tree_cache} if tree_cache else {})).fit(np.asarray(x, dtype=np.float64))
        self.labels_ = self.model_.labels_.astype(np.int64)
        self.probabilities_ = np.asarray(self.model_.probabilities_, dtype=np.float64)
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import hdbscan

        require_fitted(self, "model_")
        if self.model_ is None:
            return np.full(len(x), NOISE, dtype=np.int64), np.zeros(len(x))
        labels, strengths = hdbscan.approximate_predict(self.model_, np.asarray(x, dtype=np.float64))
        labels, strengths = labels.astype(np.int64), np.asarray(strengths, dtype=np.float64)
        if not getattr(self, "carved_", None):
            return labels, strengths
        return predict_carved(labels, strengths, x, self._fit_space, self.labels_, self.probabilities_,
                              self.carved_, self._renumbered)

    def carve(self, x: np.ndarray, embeddings: np.ndarray | None = None) -> "HdbscanClusterer":
        """After ``fit(x)``: make each well-separated group of at least ``min_cluster_size`` points
        that the fit merged into a larger cluster or left unclustered a cluster of its own
        (``separated.carve_separated``; ``embeddings``, same rows, measure the separation). What a
        user's minimum promises: no group above it that the neighbour graph keeps apart is merged."""
        require_fitted(self, "labels_")
        if self.model_ is None or self.carved_:  # once per fit: labels_ are already renumbered
            return self
        carved = carve_separated(x, self.labels_, self.probabilities_, embeddings, min_size=self.min_cluster_size_,
                                 max_size=self.max_cluster_size)
        self.labels_, self.probabilities_, self.carved_ = carved.labels, carved.probabilities, carved.groups
        if self.carved_:
            self._renumbered, self._fit_space = carved.renumbered, np.asarray(x, dtype=np.float32)
        return self

    def describe(self) -> dict[str, object]:
        return {"method": "hdbscan", "min_cluster_size": getattr(self, "min_cluster_size_", self.min_cluster_size),
                "min_samples": getattr(self, "min_samples_", self.min_samples),
                "cluster_selection_method": self.cluster_selection_method, "alpha": self.alpha,
                "max_cluster_size": self.max_cluster_size,
                **({"carved": self.carved_} if getattr(self, "carved_", None) else {})}
