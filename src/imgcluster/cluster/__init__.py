"""Clusterers: points in the clustering space → cluster labels and membership probabilities.

Each clusterer declares the parameters it takes (``parameters``, see ``imgcluster.params``);
``settings`` turns the user's ``ClusterConfig`` into one of them.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnknownName
from ..params import check_parameters, refuse_undeclared
from .agglomerative import AgglomerativeClusterer
from .auto import AutoClusterer
from .base import NOISE, Clusterer, auto_min_cluster_size
from .density import DbscanClusterer, OpticsClusterer
from .hdbscan import HdbscanClusterer
from .kmeans import KMeansClusterer
from .settings import fit_clusterer, settle
from .spectral import SpectralClusterer

CLUSTERERS: dict[str, type] = {"auto": AutoClusterer, "hdbscan": HdbscanClusterer, "kmeans": KMeansClusterer,
                               "agglomerative": AgglomerativeClusterer, "dbscan": DbscanClusterer,
                               "optics": OpticsClusterer, "spectral": SpectralClusterer}


def make_clusterer(name: str, **params: Any) -> Clusterer:
    """A clusterer by registry name with its parameters; one it does not declare is a ConfigError
    naming the clusterers that take it."""
    if name not in CLUSTERERS:
        raise UnknownName(f"No clusterer called {name!r}. Choose one of: {', '.join(sorted(CLUSTERERS))}.")
    refuse_undeclared("method", name, CLUSTERERS, params)
    check_parameters(name, CLUSTERERS[name].parameters, params)
    return CLUSTERERS[name](**params)


__all__ = ["CLUSTERERS", "NOISE", "AgglomerativeClusterer", "AutoClusterer", "Clusterer", "DbscanClusterer",
           "HdbscanClusterer", "KMeansClusterer", "OpticsClusterer", "SpectralClusterer", "auto_min_cluster_size",
           "fit_clusterer", "make_clusterer", "settle"]
