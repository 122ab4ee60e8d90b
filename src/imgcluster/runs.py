"""A run: its key, the versions it ran with, its internal metrics and its clusters' summaries."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import secrets
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np

from .cluster import NOISE

REPRESENTATIVES_PER_CLUSTER = 16
_VERSIONED = ("imgcluster", "numpy", "scikit-learn", "umap-learn", "hdbscan", "torch", "transformers", "pillow")


def new_run_key() -> str:
    """A sortable, unique run key such as ``20261123-101502-3fa9``."""
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's result."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster of a run: its id, size and representative images (catalogue ids, best first)."""

    cluster: int
    size: int
    mean_membership_probability: float
    representatives: list[int]

    @property
    def name(self) -> str:
        return "unclustered" if self.cluster == NOISE else f"cluster {self.cluster}"


def summarise_clusters(image_ids: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                       space: np.ndarray, per_cluster: int = REPRESENTATIVES_PER_CLUSTER) -> list[ClusterSummary]:
    """Per-cluster size and representatives: highest membership probability first, ties broken by
    distance to the cluster's centre in the clustering space. Largest clusters first; noise last."""
    summaries = []
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        centre = space[members].mean(axis=0)
        distance = np.linalg.norm(space[members] - centre, axis=1)
        order = np.lexsort((distance, -np.round(probabilities[members], 3)))
        summaries.append(ClusterSummary(
            cluster=int(cluster), size=int(len(members)),
            mean_membership_probability=float(probabilities[members].mean()),
            representatives=[int(image_ids[members[i]]) for i in order[:per_cluster]]))
    return sorted(summaries, key=lambda s: (s.cluster == NOISE, -s.size, s.cluster))


def internal_metrics(space: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                     seed: int = 0, sample: int = 5000) -> dict[str, Any]:
    """Label-free quality figures: cluster count, noise share, silhouette on the clustering space
    (noise excluded; on a sample of at most ``sample`` points)."""
    clustered = labels != NOISE
    metrics: dict[str, Any] = {
        "n_clusters": int(len(np.unique(labels[clustered]))),
        "noise_fraction": float(1.0 - clustered.mean()) if len(labels) else 0.0,
        "mean_membership_probability": float(probabilities.mean()) if len(labels) else 0.0,
        "silhouette": None,
    }
    if metrics["n_clusters"] >= 2 and clustered.sum() > metrics["n_clusters"]:
        from sklearn.metrics import silhouette_score

        metrics["silhouette"] = float(silhouette_score(
            space[clustered], labels[clustered], sample_size=min(sample, int(clustered.sum())),
            random_state=seed))
    return metrics


def external_metrics(truth: Sequence[Any], clusters: np.ndarray) -> dict[str, Any]:
    """Agreement of a run with known labels: NMI, ARI, homogeneity, completeness and purity, over all
    labelled images (unclustered counted as one more cluster) and over the clustered ones only."""
    from sklearn import metrics as skm

    truth_array = np.asarray([str(t) for t in truth])
    clusters = np.asarray(clusters)

    def scores(mask: np.ndarray) -> dict[str, float | int]:
        t, c = truth_array[mask], clusters[mask]
        if len(t) == 0:
            return {"n": 0}
        contingency = skm.cluster.contingency_matrix(t, c)
        return {"n": int(len(t)), "nmi": float(skm.normalized_mutual_info_score(t, c)),
                "ari": float(skm.adjusted_rand_score(t, c)), "homogeneity": float(skm.homogeneity_score(t, c)),
                "completeness": float(skm.completeness_score(t, c)),
                "purity": float(contingency.max(axis=0).sum() / contingency.sum())}

    return {"all": scores(np.ones(len(clusters), dtype=bool)), "clustered": scores(clusters != NOISE),
            "noise_fraction": float((clusters == NOISE).mean()) if len(clusters) else 0.0}
