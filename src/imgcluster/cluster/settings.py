"""From a ``ClusterConfig`` to a fitted clusterer: which method runs, which settings it takes, and
sizes given for the whole collection scaled to a fit on a sample (and back).

``ClusterConfig`` is the union of every method's settings, so they can all be named in one place;
each clusterer declares the ones it takes (its ``parameters``). A setting is *given* when it differs
from its default and from the value the run's preset gives it. A given setting that the method
does not take is a ConfigError naming the methods it applies to (``--method dbscan --k 7``); a
preset's value that the method does not take (``--preset ifunny --k 50``: the preset's HDBSCAN
sizes under k-means) is put back to its default, so the run's stored config never claims it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..config import PRESETS, ClusterConfig
from ..errors import ConfigError, UnknownName
from ..params import not_applicable, takers
from .auto import SEARCH_SAMPLE, AutoClusterer
from .base import Clusterer
from .hdbscan import HdbscanClusterer

log = logging.getLogger(__name__)

# Read by the pipeline around every clusterer (which clusterer, what happens to noise, how new
# images are filed), so they apply whatever the method.
PIPELINE = ("method", "noise", "attach_threshold", "held_quantile")
# Numbers of images: given for the whole collection, scaled to a fit on a sample.
SIZES = ("min_cluster_size", "max_cluster_size")
# A group of the user's min_cluster_size must hold this many points of the fit sample: HDBSCAN at
# 20-30 points per smallest cluster found every 0.2%+ group of bench/cluster.py's long tail, while
# a 1M collection with --min-cluster-size 300 would otherwise fit HDBSCAN at 4 (issue 25).
SAMPLE_POINTS_OF_SMALLEST = 20
# ... but the sample grows no further: UMAP on 100,000 points takes minutes on 2 cores.
LARGEST_FIT_SAMPLE = 100_000


def _registry() -> dict[str, type]:
    from . import CLUSTERERS  # the registry imports this module's callers

    return CLUSTERERS


def given(config: ClusterConfig, preset: str | None = None) -> dict[str, Any]:
    """The settings of ``config`` set on purpose: those that differ from the default and from the
    value ``preset`` gives them."""
    defaults = ClusterConfig()
    from_preset = PRESETS.get(preset or "", {}).get("cluster", {})
    mine = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value != getattr(defaults, f.name) and not (f.name in from_preset and from_preset[f.name] == value):
            mine[f.name] = value
    return mine


def chosen_method(config: ClusterConfig, preset: str | None = None) -> str:
    """The method that runs: the one named on purpose; otherwise a given ``k`` turns auto (or a
    preset's hdbscan) into kmeans and a given ``min_cluster_size`` turns auto into hdbscan."""
    mine = given(config, preset)
    if "method" in mine:
        return config.method
    if "k" in mine and config.method in ("auto", "hdbscan"):
        return "kmeans"
    if "min_cluster_size" in mine and config.method == "auto":
        return "hdbscan"
    return config.method


def settle(config: ClusterConfig, preset: str | None = None, *, lenient: bool = False) -> ClusterConfig:
    """``config`` with the method that runs (``chosen_method``) and only the settings it takes; the
    others back at their defaults. A given setting the method does not take is a ConfigError naming
    the methods it applies to; ``lenient`` drops it with a log line instead (a run stored before
    this check, replayed)."""
    registry = _registry()
    method = chosen_method(config, preset)
    if method not in registry:
        raise UnknownName(f"No clusterer called {method!r}. Choose one of: {', '.join(sorted(registry))}.")
    takes = registry[method].parameters
    mine, defaults = given(config, preset), ClusterConfig()
    reset: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name in PIPELINE or f.name in takes or getattr(config, f.name) == getattr(defaults, f.name):
            continue
        if f.name in mine and not lenient:
            raise ConfigError(not_applicable(f.name, method, takers(f.name, registry)))
        reset[f.name] = getattr(defaults, f.name)
    if reset:
        log.info("%s takes no %s; left at the default%s", method, ", ".join(reset), "s" if len(reset) > 1 else "")
    return dataclasses.replace(config, method=method, **reset)


def clusterer_for(config: ClusterConfig) -> Clusterer:
    """The unfitted clusterer ``config`` asks for, with the settings it takes (see ``settle``)."""
    from . import make_clusterer

    settled = settle(config)
    takes = _registry()[settled.method].parameters
    return make_clusterer(settled.method, **{name: getattr(settled, name) for name in takes
                                             if hasattr(settled, name)})


def fit_clusterer(space: np.ndarray, config: ClusterConfig, *, embeddings: np.ndarray | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  collection_size: int | None = None) -> tuple[Clusterer, dict[str, Any]]:
    """Fit the clusterer ``config`` asks for on ``space`` (n, d); return it and the settings it used.

    Sizes in ``config`` are for a collection of ``collection_size`` images (default n); fitting on
    n of them, they are scaled to the n, and the settings returned say them at the collection's
    scale again, with the sample's beside (``min_cluster_size_in_sample``). ``embeddings`` (the
    vectors ``space`` was reduced from, same rows) let auto mode score its candidates in the
    embedding space. ``progress(done, total)``: auto mode's candidates, then its final fit; one
    step for the other methods."""
    n = len(space)
    collection = n if collection_size is None else collection_size
    clusterer = clusterer_for(sized_for_sample(config, n, collection))
    if isinstance(clusterer, AutoClusterer):
        clusterer.fit(space, embeddings=embeddings, progress=progress)
    else:
        if progress is not None:
            progress(0, 1)
        clusterer.fit(space)
        if carves_given_minimum(config, clusterer, n):
            clusterer.carve(space, embeddings)
        if progress is not None:
            progress(1, 1)
    return clusterer, in_collection(clusterer.describe(), n, collection)


def carves_given_minimum(config: ClusterConfig, clusterer: Clusterer, n: int) -> bool:
    """Whether auto mode, turned into HDBSCAN by a given ``min_cluster_size``, carves out the
    well-separated groups above that minimum its fit merged: as auto mode does without one, only on
    more than ``SEARCH_SAMPLE`` points (below, carving split digits by writing style; see auto.py)."""
    return config.method == "auto" and isinstance(clusterer, HdbscanClusterer) and n > SEARCH_SAMPLE


def fit_sample_for(fit_sample: int, n: int, config: ClusterConfig) -> int:
    """How many of ``n`` images a fit uses: ``fit_sample`` (0: all), grown so that a group of the
    ``min_cluster_size`` that ``config`` runs with holds ``SAMPLE_POINTS_OF_SMALLEST`` points of it,
    up to ``LARGEST_FIT_SAMPLE``; n when that is at least n."""
    if fit_sample <= 0 or fit_sample >= n:
        return n
    smallest = settle(config, lenient=True).min_cluster_size
    if not smallest:
        return fit_sample
    needed = -(-SAMPLE_POINTS_OF_SMALLEST * n // smallest)
    if needed > LARGEST_FIT_SAMPLE:
        log.warning("min_cluster_size=%d of %d images would need a fit sample of %d; fitting on %d, so groups "
                    "under about %d images may be missed", smallest, n, needed, LARGEST_FIT_SAMPLE,
                    SAMPLE_POINTS_OF_SMALLEST * n // LARGEST_FIT_SAMPLE)
    grown = min(max(fit_sample, needed), LARGEST_FIT_SAMPLE, n)
    if grown > fit_sample:
        log.info("fit sample grown from %d to %d images so that a group of min_cluster_size=%d holds %d of them",
                 fit_sample, grown, smallest, SAMPLE_POINTS_OF_SMALLEST)
    return max(grown, fit_sample)


def sized_for_sample(config: ClusterConfig, sample: int, n: int) -> ClusterConfig:
    """Cluster sizes given for a collection of ``n``, scaled to a fit on ``sample`` of them."""
    if sample >= n or all(getattr(config, key) is None for key in SIZES):
        return config
    return dataclasses.replace(config, **{key: None if getattr(config, key) is None
                                          else max(2, round(getattr(config, key) * sample / n)) for key in SIZES})


def in_collection(described: Mapping[str, Any], sample: int, n: int) -> dict[str, Any]:
    """A clusterer's settings from a fit on ``sample`` of ``n`` images, its sizes as the whole
    collection sees them (``KEY``) and as the sample did (``KEY_in_sample``)."""
    params = dict(described)
    if sample >= n:
        return params
    for key in SIZES:
        if params.get(key):
            params[f"{key}_in_sample"] = params[key]
            params[key] = round(params[key] * n / sample)
    return params


def collection_min_cluster_size(min_cluster_size: int | None, n_images: int, fit_sample: int) -> int:
    """A run's smallest cluster at the scale of its whole collection of ``n_images``: its stored
    ``min_cluster_size`` times ``n_images`` over the images fitted (``fit_sample`` when smaller; 0:
    all), or about 1% of the images (at least 5) when it used none (k-means).

    For a ``min_cluster_size`` as the fit saw it: a sampled fit stores it already at the collection's
    scale, with the sample's beside (``in_collection``), and such a stored value is used as it is
    (``run.filing.min_cluster_size``); this scaling is for runs stored without that key."""
    if not min_cluster_size:
        return max(5, n_images // 100)
    fitted = min(n_images, fit_sample) if fit_sample > 0 else n_images
    return max(2, round(int(min_cluster_size) * n_images / max(1, fitted)))
