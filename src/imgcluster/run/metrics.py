"""What a run measures of itself: its key, the versions it ran with, its clusters' summaries, internal
and external metrics, and the warnings its answer deserves."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..cluster import NOISE, auto_min_cluster_size
from ..cluster.base import euclidean_silhouette
from ..store.records import ClusterSummary

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
        # The sample scikit-learn's silhouette_score(sample_size=..., random_state=seed) takes.
        rows = np.random.RandomState(seed).permutation(int(clustered.sum()))[:sample]
        metrics["silhouette"] = euclidean_silhouette(space[clustered][rows], labels[clustered][rows])
    return metrics


# Above this share of unclustered images, a run's answer is mostly no answer.
MOSTLY_UNCLUSTERED = 0.5
_KMEANS_HINT = "--method kmeans --k N (N: the number of groups you expect; k-means leaves no image unclustered)"


def answer_warnings(n_images: int, metrics: Mapping[str, Any], clustering: Mapping[str, Any],
                    preset: str | None = None) -> list[str]:
    """What is degenerate in a run's answer, each with what to try: no cluster, a single cluster, or
    more than half of the images unclustered. ``metrics`` as :func:`internal_metrics` gives them,
    ``clustering`` the fitted clusterer's description (``info["clustering"]``), ``preset`` the preset
    the run used. Empty when the answer is not degenerate."""
    n_clusters, noise = int(metrics.get("n_clusters", 0)), float(metrics.get("noise_fraction", 0.0))
    if n_images < 3:
        return [f"Only {n_images} image{'s' if n_images != 1 else ''}: there is nothing to group. Cluster a "
                "folder that holds more images."]
    size = clustering.get("min_cluster_size")
    if n_clusters == 0:
        return [_no_clusters(n_images, size, preset)]
    warnings = []
    if n_clusters == 1:
        if clustering.get("k") == 1:
            warnings.append("Only one cluster: k=1 asks for one. Try a larger --k, or leave --k unset for auto mode "
                            "to choose.")
        else:
            warnings.append("Only one cluster: the run does not divide the collection. Try "
                            + (f"a smaller --min-cluster-size (this run used {size}; e.g. {_smaller(n_images, size)}), "
                               if size else "") + f"{_KMEANS_HINT}, or another --model.")
    if noise > MOSTLY_UNCLUSTERED:
        attach = ("a lower --attach-threshold (this run used "
                  f"{clustering.get('attach_threshold')})" if clustering.get("noise") == "attach" else
                  "--noise attach (each joins the cluster its nearest clustered images vote for)")
        warnings.append(f"{noise:.0%} of the images are unclustered (more than half). Try {attach}, "
                        + (f"a smaller --min-cluster-size (this run used {size}), " if size else "")
                        + f"or {_KMEANS_HINT}.")
    return warnings


def _no_clusters(n_images: int, size: int | None, preset: str | None) -> str:
    if not size:
        return f"No clusters: every image is unclustered. Try --method auto, or {_KMEANS_HINT}."
    smaller = _smaller(n_images, size)
    fix = (f"try --preset default (min_cluster_size about 1% of the images) or --min-cluster-size {smaller}"
           if preset not in (None, "default") else
           f"try --min-cluster-size {smaller}, or leave it unset (about 1% of the images)")
    if size > n_images:
        return (f"No clusters: min_cluster_size {size} is larger than the {n_images:,} images, so no cluster can "
                f"form: {fix}.")
    if 2 * size > n_images:
        return (f"No clusters: min_cluster_size {size} is more than half of the {n_images:,} images, so no two "
                f"clusters can form: {fix}.")
    return (f"No clusters: no group of {size:,} or more images is dense enough (min_cluster_size {size}): "
            f"{fix}, or {_KMEANS_HINT}.")


def _smaller(n_images: int, size: int | None) -> int:
    """A min_cluster_size to suggest instead of ``size``: imgcluster's own choice when that is smaller."""
    chosen = auto_min_cluster_size(n_images)
    return chosen if size is None or chosen < size else max(2, size // 2)


def used_cluster_settings(settings: Mapping[str, Any], described: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved cluster settings (``ClusterConfig`` as a dict) that the fitted method used: its
    ``method``, the knobs the clusterer reports in ``described``, and how noise is treated. A k-means
    run then lists no HDBSCAN knob; the others keep their defaults when the settings are replayed.
    The seed is always kept: auto mode's samples and candidates and noise attachment use it even
    when the final clusterer reports none."""
    used = set(described) | {"method", "noise", "seed"}
    if settings.get("noise") == "attach":
        used.add("attach_threshold")
    return {key: value for key, value in settings.items() if key in used}


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
