"""Clusterers: points in the clustering space → cluster labels and membership probabilities."""

from __future__ import annotations

from typing import Any

from ..errors import UnknownName
from .agglomerative import AgglomerativeClusterer
from .auto import AutoClusterer
from .base import NOISE, Clusterer, auto_min_cluster_size
from .density import DbscanClusterer, OpticsClusterer
from .hdbscan import HdbscanClusterer
from .kmeans import KMeansClusterer
from .spectral import SpectralClusterer

CLUSTERERS: dict[str, type] = {"auto": AutoClusterer, "hdbscan": HdbscanClusterer, "kmeans": KMeansClusterer,
                               "agglomerative": AgglomerativeClusterer, "dbscan": DbscanClusterer,
                               "optics": OpticsClusterer, "spectral": SpectralClusterer}


def make_clusterer(name: str, **params: Any) -> Clusterer:
    """A clusterer by registry name with its parameters."""
    if name not in CLUSTERERS:
        raise UnknownName(f"No clusterer called {name!r}. Choose one of: {', '.join(sorted(CLUSTERERS))}.")
    return CLUSTERERS[name](**params)


__all__ = ["CLUSTERERS", "NOISE", "AgglomerativeClusterer", "AutoClusterer", "Clusterer", "DbscanClusterer",
           "HdbscanClusterer", "KMeansClusterer", "OpticsClusterer", "SpectralClusterer", "auto_min_cluster_size",
           "make_clusterer"]
