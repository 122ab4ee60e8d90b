"""Reducers: embeddings → a smaller space to cluster in, and → the 2-D map.

All share the sklearn-like shape ``fit(x) -> self``, ``transform(x)``, ``embedding_`` (the fitted
points). ``none`` is a class too, so callers never branch on "no reduction". Each declares the
parameters it takes (``parameters``, see ``imgcluster.params``); ``reducer_settings`` picks them
from a ``ReduceConfig`` for the clustering space or the 2-D map.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, ClassVar, Protocol

import numpy as np

from .config import PRESETS, ReduceConfig
from .errors import ConfigError, UnknownName
from .jit_cache import cache_kernels, eager_kernels_cached, use_numba_cache
from .neighbours import knn_graph
from .params import (Anything, Interval, Parameters, check_parameters, not_applicable, refuse_undeclared,
                     require_fitted, takers)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

EXACT_KNN_UP_TO = 50_000  # faiss brute force in 64-d stays within seconds up to here
TSNE_MIN_POINTS = 5  # fewer get PCA: a perplexity under n/3 would give each point one or two neighbours
TSNE_ITERATIONS = 500  # t-SNE's optimisation iterations unless told otherwise
TSNE_EARLY_ITERATIONS = 250  # openTSNE's early-exaggeration phase, run before those
_TSNE_TICK_EVERY = 25  # iterations between progress ticks: each tick makes openTSNE also evaluate the error


class Reducer(Protocol):
    embedding_: np.ndarray

    def fit(self, x: np.ndarray, progress: Progress | None = None) -> "Reducer":
        """Fit on ``x`` (n, d); reducers with iterations report them to ``progress(done, total)``,
        one-step reducers ignore it."""
        ...

    def transform(self, x: np.ndarray) -> np.ndarray: ...


SEED: Parameters = {"seed": [Interval(int, 0)]}
METRICS = ("cosine", "euclidean")


class PcaReducer:
    """Linear projection: fast and deterministic; the fallback for inputs too small for UMAP."""

    parameters: ClassVar[Parameters] = {"n_components": [Interval(int, 1)], **SEED}

    def __init__(self, n_components: int = 50, seed: int = 0):
        self.n_components, self.seed = n_components, seed

    def fit(self, x: np.ndarray, progress: Progress | None = None) -> "PcaReducer":
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

    parameters: ClassVar[Parameters] = SEED  # nothing is random; taken so every reducer takes a seed

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x: np.ndarray, progress: Progress | None = None) -> "NoReducer":
        self.embedding_ = np.asarray(x, dtype=np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        require_fitted(self, "embedding_")  # as every reducer: the same code path with or without reduction
        return np.asarray(x, dtype=np.float32)


class StandardReducer:
    """Standardise each embedding dimension (zero mean, unit variance; scikit-learn's StandardScaler)
    and cluster there, as the GumGum article does before k-means. No reduction of dimensions."""

    parameters: ClassVar[Parameters] = SEED  # nothing is random; taken so every reducer takes a seed

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x: np.ndarray, progress: Progress | None = None) -> "StandardReducer":
        from sklearn.preprocessing import StandardScaler

        self.model_ = StandardScaler().fit(x)
        self.embedding_ = np.asarray(self.model_.transform(x), dtype=np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        require_fitted(self, "model_")
        return np.asarray(self.model_.transform(x), dtype=np.float32)


class UmapReducer:
    """UMAP (umap-learn). ``knn`` takes a precomputed neighbour graph so that the clustering space
    and the 2-D map, fitted on the same data, pay for the neighbour search once."""

    parameters: ClassVar[Parameters] = {
        "n_components": [Interval(int, 1)], "n_neighbors": [Interval(int, 2), None],
        "min_dist": [Interval(float, 0)], "metric": [Anything("a umap-learn distance name")],
        "n_epochs": [Interval(int, 1), None], **SEED,
        "knn": [Anything("a precomputed neighbour graph (reduce.nearest_neighbors)"), None]}

    def __init__(self, n_components: int = 5, n_neighbors: int | None = None, min_dist: float = 0.0,
                 metric: str = "cosine", n_epochs: int | None = None, seed: int = 0,
                 knn: tuple[np.ndarray, np.ndarray, Any] | None = None):
        self.n_components, self.n_neighbors, self.min_dist = n_components, n_neighbors, min_dist
        self.metric, self.n_epochs, self.seed, self.knn = metric, n_epochs, seed, knn

    def fit(self, x: np.ndarray, progress: Progress | None = None) -> "UmapReducer":
        """Fit on ``x`` (n, d); ``progress(epoch, n_epochs)`` after each optimisation epoch (the
        neighbour graph and the initial layout come first, without ticks)."""
        n = len(x)
        if n <= self.n_components + 2:  # spectral init needs more points than dimensions
            log.info("%d points are too few for UMAP; using PCA", n)
            self.model_ = PcaReducer(self.n_components, self.seed).fit(x)
            self.embedding_ = self.model_.embedding_
            return self
        umap = import_umap()
        _report_umap_epochs()
        n_neighbors = effective_neighbors(self.n_neighbors, n)
        knn = self.knn if self.knn is not None and self.knn[0].shape[1] == n_neighbors else None
        with warnings.catch_warnings(), _epochs_reported_to(progress):
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
            self.model_ = umap.UMAP(
                n_components=self.n_components, n_neighbors=n_neighbors, min_dist=self.min_dist,
                metric=self.metric, n_epochs=umap_epochs(self.n_epochs, n), random_state=self.seed,
                precomputed_knn=knn if knn is not None else (None, None, None),
                init="spectral" if n > 3 * self.n_components else "random",
            ).fit(x)
        self.embedding_ = np.asarray(self.model_.embedding_, dtype=np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        require_fitted(self, "model_")
        return np.asarray(self.model_.transform(x), dtype=np.float32)


class TsneReducer:
    """t-SNE (openTSNE), for the 2-D map: keeps local neighbourhoods, not global distances, so
    clusters read well on screen but gaps between them mean little. 1-3 components only.

    ``perplexity`` (about the number of neighbours each point attends to) is capped below a third of
    the points, as the neighbour search needs three per unit. ``transform`` places new points into
    the fitted map without moving the old ones (openTSNE's optimisation against the fixed embedding).
    Single-threaded by default: threads change the last digits, and the same seed must give the same map.
    """

    # n_components and perplexity are checked in __init__, whose messages say what to use instead.
    parameters: ClassVar[Parameters] = {
        "n_components": [Interval(int)], "perplexity": [Interval(float)],
        "metric": [Anything("an openTSNE distance name")], "n_iter": [Interval(int, 1)],
        "n_jobs": [Interval(int, 1)], **SEED}

    def __init__(self, n_components: int = 2, perplexity: float = 30.0, metric: str = "cosine",
                 n_iter: int = TSNE_ITERATIONS, n_jobs: int = 1, seed: int = 0):
        if not 1 <= n_components <= 3:
            raise ConfigError(f"t-SNE embeds in 1 to 3 dimensions; got n_components={n_components}. Use it for "
                              "the 2-D map, or umap (or pca) for a clustering space with more dimensions.")
        if perplexity <= 0:
            raise ConfigError(f"perplexity must be positive; got {perplexity}. 5-50 is usual; 30 is the default.")
        self.n_components, self.perplexity, self.metric = n_components, perplexity, metric
        self.n_iter, self.n_jobs, self.seed = n_iter, n_jobs, seed

    def fit(self, x: np.ndarray, progress: Progress | None = None) -> "TsneReducer":
        """Fit on ``x`` (n, d); ``progress(done, total)`` every 25 iterations of both phases (early
        exaggeration, then ``n_iter``), after the neighbour search and affinities that come first."""
        n = len(x)
        if n < TSNE_MIN_POINTS:
            log.info("%d points are too few for t-SNE; using PCA", n)
            self.model_ = PcaReducer(self.n_components, self.seed).fit(x)
            self.embedding_ = self.model_.embedding_
            return self
        import openTSNE

        # openTSNE finds 3 x perplexity neighbours; it must stay below n - 1.
        self.perplexity_ = float(min(self.perplexity, (n - 1) / 3))
        # openTSNE's callbacks only read the embedding: the same seed gives the same map with them.
        ticks = {} if progress is None else {
            "callbacks": _iteration_ticks(progress, TSNE_EARLY_ITERATIONS + self.n_iter),
            "callbacks_every_iters": _TSNE_TICK_EVERY}
        self.model_ = openTSNE.TSNE(
            n_components=self.n_components, perplexity=self.perplexity_, metric=self.metric, n_iter=self.n_iter,
            # auto: Barnes-Hut below 10,000 points (FFT's fixed grid cost 5 s on 90 points, BH 0.2 s),
            # FFT interpolation above; FFT handles only 1-2 dimensions, so 3 always takes Barnes-Hut.
            negative_gradient_method="auto" if self.n_components <= 2 else "bh",
            n_jobs=self.n_jobs, random_state=self.seed, verbose=False, **ticks,
        ).fit(np.asarray(x, dtype=np.float64))
        # openTSNE's transform first centres the fitted map on its bounding box, in place; doing it
        # now keeps embedding_ and transformed points in one frame.
        self.model_ -= (self.model_.max(axis=0) + self.model_.min(axis=0)) / 2
        self.embedding_ = np.asarray(self.model_, dtype=np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        require_fitted(self, "model_")
        if isinstance(self.model_, PcaReducer):
            return self.model_.transform(x)
        # openTSNE's defaults for adding points: perplexity 5, its neighbours capped by the fit's size.
        perplexity = min(5.0, self.perplexity_)
        return np.asarray(self.model_.transform(np.asarray(x, dtype=np.float64), perplexity=perplexity),
                          dtype=np.float32)


def _iteration_ticks(progress: Progress, total: int) -> Callable[..., None]:
    """An openTSNE callback counting iterations over both phases (each phase counts from 1 again)."""
    calls = [0]
    progress(0, total)

    def tick(*_: Any) -> None:
        calls[0] += 1
        progress(min(calls[0] * _TSNE_TICK_EVERY, total), total)
    return tick


def fit_units(method: str, n_epochs: int | None, n: int) -> int:
    """The steps a reducer's fit on ``n`` points reports to ``progress``, for sizing a bar: UMAP's
    epochs (``n_epochs``, else umap-learn's default), t-SNE's iterations, one for the others."""
    if method == "umap":
        return umap_epochs(n_epochs, n)
    if method == "tsne":
        return TSNE_EARLY_ITERATIONS + TSNE_ITERATIONS
    return 1


_IMPORTING_UMAP = threading.Lock()  # the web app's jobs may cluster in several threads at once


def import_umap() -> Any:
    """umap-learn, imported with numba's cache in the user's cache folder and every kernel the
    pipeline runs kept there: a new process loads them instead of compiling them again."""
    with _IMPORTING_UMAP:
        if "umap" not in sys.modules:
            use_numba_cache()
            with eager_kernels_cached(("umap.",)):
                import umap  # noqa: F401
        _cache_umap_compilation()
    return sys.modules["umap"]


def _cache_umap_compilation() -> None:
    """Let numba keep umap-learn's uncached kernels on disk, as umap-learn already does for some:
    the graph kernels' compilation cost ~3 s in every new process (2 cores), their work on 15,000
    points ~0.1 s; the seeded (single-threaded) layout epoch's 1.8-2.4 s (2 busy cores)."""
    from umap import layouts, umap_

    cache_kernels((umap_.smooth_knn_dist, umap_.compute_membership_strengths,
                   layouts._nb_optimize_layout_euclidean_single_epoch))


# Unset epochs: umap-learn runs 500 up to 10,000 points and 200 beyond. From 1,000 points 200 is
# as good for clustering (NMI over seeds 0-3: digits 0.790 at 500, 0.797 at 200; photo crops 0.997
# and 0.996) and the layout, single-threaded when seeded, takes 40% less of a re-cluster's time.
# Below 1,000 the layout is cheap and the extra epochs are kept.
FEWER_EPOCHS_FROM = 1_000


def umap_epochs(n_epochs: int | None, n: int) -> int:
    """The optimisation epochs a UMAP fit on ``n`` points runs: ``n_epochs``, else 500 below
    ``FEWER_EPOCHS_FROM`` points and 200 from there."""
    return n_epochs if n_epochs is not None else (500 if n < FEWER_EPOCHS_FROM else 200)


# The epoch callback of the UMAP fit running in this thread (or task); None: umap-learn's own tqdm.
_epoch_progress: ContextVar[Progress | None] = ContextVar("imgcluster_umap_epochs", default=None)


@contextlib.contextmanager
def _epochs_reported_to(progress: Progress | None) -> Iterator[None]:
    token = _epoch_progress.set(progress)
    try:
        yield
    finally:
        _epoch_progress.reset(token)


def _report_umap_epochs() -> None:
    """Count umap-learn's optimisation epochs for ``_epoch_progress``.

    umap-learn has no progress callback; its only hook is the ``tqdm`` its layout loops
    (``umap.layouts``) iterate their epochs through, so that name is wrapped, once per process. The
    wrapper only observes the loop, so the layout is the same with or without it; with no callback
    set (other threads, other callers) it is umap-learn's own tqdm, verbose output included."""
    from umap import layouts

    original = layouts.tqdm
    if getattr(original, "_imgcluster_epochs", False):
        return

    def epochs(iterable: Iterable[int], *args: Any, **kwargs: Any) -> Iterable[int]:
        progress = _epoch_progress.get()
        loop = original(iterable, *args, **kwargs)
        return loop if progress is None else _ticking(loop, len(iterable), progress)  # type: ignore[arg-type]

    epochs._imgcluster_epochs = True  # type: ignore[attr-defined]
    layouts.tqdm = epochs


def _ticking(loop: Iterable[int], total: int, progress: Progress) -> Iterator[int]:
    progress(0, total)
    for done, epoch in enumerate(loop, start=1):
        yield epoch
        progress(done, total)  # the loop asks for the next epoch once this one's work is done


def effective_neighbors(requested: int | None, n: int) -> int:
    """UMAP's neighbourhood: 15 unless set, always below the number of points."""
    return max(2, min(requested or 15, n - 1))


def nearest_neighbors(x: np.ndarray, n_neighbors: int, metric: str = "cosine",
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, Any]:
    """The k-NN graph UMAP would build, in the form ``UMAP(precomputed_knn=...)`` accepts:
    (n, k) indices, the point itself among them, and their distances; k is ``n_neighbors``, at most n.

    Up to ``EXACT_KNN_UP_TO`` points with cosine or euclidean distance, ``neighbours.knn_graph``
    finds candidates (faiss), re-ranked by the true distance: exact up to
    ``neighbours.FULL_WIDTH_KNN_UP_TO`` points, beyond that searched in a 64-d PCA projection. No
    search index is returned, so such a UMAP cannot ``transform``. This skips pynndescent's numba compilation, measured at ~25 s in every new
    process against ~1 s of actual work on 25,000 points, and, below 4,096 points, UMAP's own
    exact search, which calls a Python-level distance for every pair (25-35 s on 3,925 photos).
    Beyond ``EXACT_KNN_UP_TO``, umap-learn's own.
    """
    n = len(x)
    n_neighbors = min(n_neighbors, n)
    if n > EXACT_KNN_UP_TO or metric not in ("cosine", "euclidean"):
        import_umap()
        from umap.umap_ import nearest_neighbors as umap_knn

        return umap_knn(x, n_neighbors, metric, {}, False, np.random.RandomState(seed))
    indices, distances = knn_graph(x, n_neighbors, metric, seed)
    return indices, distances, None


def _pad(points: np.ndarray, width: int) -> np.ndarray:
    points = np.asarray(points, dtype=np.float32)
    if points.shape[1] >= width:
        return points
    return np.hstack([points, np.zeros((len(points), width - points.shape[1]), dtype=np.float32)])


REDUCERS: dict[str, type] = {"umap": UmapReducer, "pca": PcaReducer, "tsne": TsneReducer, "none": NoReducer,
                             "standard": StandardReducer}


def make_reducer(name: str, **params: Any) -> Reducer:
    """A reducer by registry name with its parameters; one it does not declare is a ConfigError
    naming the reducers that take it."""
    if name not in REDUCERS:
        raise UnknownName(f"No reducer called {name!r}. Choose one of: {', '.join(sorted(REDUCERS))}.")
    refuse_undeclared("reducer", name, REDUCERS, params)
    check_parameters(name, REDUCERS[name].parameters, params)
    return REDUCERS[name](**params)


# ReduceConfig field -> (the roles it feeds: the clustering space, the 2-D map; the reducer parameter).
# method, map_method, seed and fit_sample are read by the pipeline whatever the reducers.
_FEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "n_components": (("space",), "n_components"), "n_neighbors": (("space", "map"), "n_neighbors"),
    "min_dist": (("space",), "min_dist"), "n_epochs": (("space",), "n_epochs"),
    "metric": (("space", "map"), "metric"), "map_min_dist": (("map",), "min_dist"),
    "map_n_epochs": (("map",), "n_epochs")}


def reducer_settings(config: ReduceConfig, role: str, knn: Any = None) -> dict[str, Any]:
    """The parameters of ``config``'s reducer for ``role`` ("space": the clustering space, "map":
    the 2-D map) that it declares: a PCA gets no UMAP knob. ``knn`` is a shared neighbour graph."""
    offered: dict[str, Any] = {"seed": config.seed, "knn": knn, "n_components": 2}  # the map is 2-D
    for field, (roles, parameter) in _FEEDS.items():
        if role in roles:
            offered[parameter] = getattr(config, field)
    method = config.method if role == "space" else config.map_method
    declared = REDUCERS[method].parameters if method in REDUCERS else {}
    return {name: value for name, value in offered.items() if name in declared}


def check_reduce_config(config: ReduceConfig, preset: str | None = None) -> None:
    """Refuse unknown reducer names, and a setting given on purpose (neither the default nor the
    value ``preset`` gives it) that neither chosen reducer takes, naming the reducers it applies to."""
    for name in (config.method, config.map_method):
        if name not in REDUCERS:
            raise UnknownName(f"No reducer called {name!r}. Choose one of: {', '.join(sorted(REDUCERS))}.")
    defaults = ReduceConfig()
    from_preset = PRESETS.get(preset or "", {}).get("reduce", {})
    for field, (roles, parameter) in _FEEDS.items():
        value = getattr(config, field)
        if value == getattr(defaults, field) or from_preset.get(field, object()) == value:
            continue
        chosen = [config.method if role == "space" else config.map_method for role in roles]
        if not any(parameter in REDUCERS[method].parameters for method in chosen):
            raise ConfigError(not_applicable(field, " or ".join(dict.fromkeys(chosen)),
                                             takers(parameter, REDUCERS), "reducer", f"--set reduce.{field}"))
