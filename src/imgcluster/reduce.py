"""Reducers: embeddings → a smaller space to cluster in, and → the 2-D map.

All share the sklearn-like shape ``fit(x) -> self``, ``transform(x)``, ``embedding_`` (the fitted
points). ``none`` is a class too, so callers never branch on "no reduction".
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Protocol

import numpy as np

from .errors import UnknownName

log = logging.getLogger(__name__)


class Reducer(Protocol):
    embedding_: np.ndarray

    def fit(self, x: np.ndarray) -> "Reducer": ...

    def transform(self, x: np.ndarray) -> np.ndarray: ...


def require_fitted(obj: object, attribute: str) -> None:
    if not hasattr(obj, attribute):
        raise RuntimeError(f"{type(obj).__name__} is not fitted yet; call fit() first.")


class PcaReducer:
    """Linear projection: fast and deterministic; the fallback for inputs too small for UMAP."""

    def __init__(self, n_components: int = 50, seed: int = 0, **_: Any):
        self.n_components, self.seed = n_components, seed

    def fit(self, x: np.ndarray) -> "PcaReducer":
        from sklearn.decomposition import PCA

        if len(x) < 2:  # one point has no direction to project on
            self.model_ = None
            self.embedding_ = np.zeros((len(x), self.n_components), dtype=np.float32)
            return self
        k = max(1, min(self.n_components, *x.shape))  # tiny inputs must still work
        self.model_ = PCA(n_components=k, random_state=self.seed).fit(x)
        self.embedding_ = _pad(self.model_.transform(x), self.n_components)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        require_fitted(self, "model_")
        if self.model_ is None:
            return np.zeros((len(x), self.n_components), dtype=np.float32)
        return _pad(self.model_.transform(x), self.n_components)


class NoReducer:
    """Cluster on the embeddings themselves."""

    def __init__(self, **_: Any):
        pass

    def fit(self, x: np.ndarray) -> "NoReducer":
        self.embedding_ = np.asarray(x, dtype=np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)


class UmapReducer:
    """UMAP (umap-learn). ``knn`` takes a precomputed neighbour graph so that the clustering space
    and the 2-D map, fitted on the same data, pay for the neighbour search once."""

    def __init__(self, n_components: int = 5, n_neighbors: int | None = None, min_dist: float = 0.0,
                 metric: str = "cosine", n_epochs: int | None = None, seed: int = 0,
                 knn: tuple[np.ndarray, np.ndarray, Any] | None = None):
        self.n_components, self.n_neighbors, self.min_dist = n_components, n_neighbors, min_dist
        self.metric, self.n_epochs, self.seed, self.knn = metric, n_epochs, seed, knn

    def fit(self, x: np.ndarray) -> "UmapReducer":
        n = len(x)
        if n <= self.n_components + 2:  # spectral init needs more points than dimensions
            log.info("%d points are too few for UMAP; using PCA", n)
            self.model_ = PcaReducer(self.n_components, self.seed).fit(x)
            self.embedding_ = self.model_.embedding_
            return self
        import umap

        n_neighbors = effective_neighbors(self.n_neighbors, n)
        knn = self.knn if self.knn is not None and self.knn[0].shape[1] == n_neighbors else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
            self.model_ = umap.UMAP(
                n_components=self.n_components, n_neighbors=n_neighbors, min_dist=self.min_dist,
                metric=self.metric, n_epochs=self.n_epochs, random_state=self.seed,
                precomputed_knn=knn if knn is not None else (None, None, None),
                init="spectral" if n > 3 * self.n_components else "random",
            ).fit(x)
        self.embedding_ = np.asarray(self.model_.embedding_, dtype=np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        require_fitted(self, "model_")
        return np.asarray(self.model_.transform(x), dtype=np.float32)


def effective_neighbors(requested: int | None, n: int) -> int:
    """UMAP's neighbourhood: 15 unless set, always below the number of points."""
    return max(2, min(requested or 15, n - 1))


def nearest_neighbors(x: np.ndarray, n_neighbors: int, metric: str = "cosine",
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, Any]:
    """The k-NN graph UMAP would build, in the form ``UMAP(precomputed_knn=...)`` accepts."""
    from umap.umap_ import nearest_neighbors as umap_knn

    indices, distances, index = umap_knn(x, n_neighbors, metric, {}, False,
                                         np.random.RandomState(seed))
    return indices, distances, index


def _pad(points: np.ndarray, width: int) -> np.ndarray:
    points = np.asarray(points, dtype=np.float32)
    if points.shape[1] >= width:
        return points
    return np.hstack([points, np.zeros((len(points), width - points.shape[1]), dtype=np.float32)])


REDUCERS: dict[str, type] = {"umap": UmapReducer, "pca": PcaReducer, "none": NoReducer}


def make_reducer(name: str, **params: Any) -> Reducer:
    """A reducer by registry name with its parameters."""
    if name not in REDUCERS:
        raise UnknownName(f"No reducer called {name!r}. Choose one of: {', '.join(sorted(REDUCERS))}.")
    return REDUCERS[name](**params)
