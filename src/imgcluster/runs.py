"""A run: its key, the versions it ran with, its internal metrics and its clusters' summaries."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import secrets
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .cluster import NOISE, auto_min_cluster_size

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


# -- comparing two runs and measuring stability ---------------------------------------------------

ABSENT = -2           # label of a point a refit did not see (subsampled out); never a cluster or noise
UNSTABLE_BELOW = 0.6  # a cluster whose stability is lower is flagged; Hennig's (2007) "dissolved" bar is 0.5
SPLIT_SHARE = 0.2     # a part of a split or merge holds at least this share of the cluster it comes from ...
SPLIT_MIN_IMAGES = 5  # ... and at least this many images: the smallest cluster hdbscan forms by default


@dataclass(frozen=True)
class ClusterMatch:
    """A cluster of run A paired with one of run B by the best one-to-one matching (by Jaccard)."""

    a: int
    b: int
    overlap: int      # images in both
    jaccard: float    # overlap / images in either


@dataclass(frozen=True)
class ClusterParts:
    """A split (``cluster`` of A went to several clusters of B) or a merge (several clusters of A went
    into ``cluster`` of B). ``parts`` are (the other run's cluster, images) pairs, largest first."""

    cluster: int
    parts: list[tuple[int, int]]


@dataclass(frozen=True)
class AssignmentComparison:
    """How two labelings (n,) of the same points agree; unclustered (-1) counts as one more label.

    ``variation_of_information`` is H(A|B) + H(B|A) in nats: 0 for identical labelings, at most log(n).
    ``contingency[i, j]`` counts the points in ``clusters_a[i]`` and ``clusters_b[j]``. ``moved`` (n,)
    marks points whose B cluster is not the one their A cluster was matched with (unclustered matches
    unclustered; every point of an unmatched cluster moved)."""

    n: int
    ari: float
    nmi: float
    variation_of_information: float
    clusters_a: list[int]
    clusters_b: list[int]
    contingency: np.ndarray
    matching: list[ClusterMatch]
    splits: list[ClusterParts]
    merges: list[ClusterParts]
    moved: np.ndarray


@dataclass(frozen=True)
class ClusterStability:
    """How well one cluster of a reference labeling survives refits: ``stability`` is the mean over
    refits of its best Jaccard with any cluster of the refit (``per_repeat``), over the points the
    refit saw. 1: found again every time; below ``UNSTABLE_BELOW``: flagged unstable."""

    cluster: int
    size: int
    stability: float
    per_repeat: list[float]

    @property
    def unstable(self) -> bool:
        return self.stability < UNSTABLE_BELOW


@dataclass(frozen=True)
class Consensus:
    """A per-point majority vote over a reference labeling and refits relabelled onto it: ``labels`` (n,)
    and ``agreement`` (n,), the share of the labelings that saw a point which voted for its label."""

    labels: np.ndarray
    agreement: np.ndarray


def contingency(labels_a: np.ndarray, labels_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clusters_a (ka,), clusters_b (kb,), table (ka, kb)): how many points carry each pair of labels.
    Memory is ka x kb, never n x n."""
    clusters_a, index_a = np.unique(np.asarray(labels_a), return_inverse=True)
    clusters_b, index_b = np.unique(np.asarray(labels_b), return_inverse=True)
    table = np.bincount(index_a.ravel() * len(clusters_b) + index_b.ravel(),
                        minlength=len(clusters_a) * len(clusters_b)).reshape(len(clusters_a), len(clusters_b))
    return clusters_a, clusters_b, table


def jaccard(table: np.ndarray) -> np.ndarray:
    """Jaccard index (ka, kb) of every pair of clusters from their contingency table."""
    union = table.sum(axis=1, keepdims=True) + table.sum(axis=0, keepdims=True) - table
    return np.divide(table, union, out=np.zeros(table.shape), where=union > 0)


def match_clusters(clusters_a: np.ndarray, clusters_b: np.ndarray, table: np.ndarray) -> list[ClusterMatch]:
    """The one-to-one pairing of clusters (unclustered left out) with the largest total Jaccard
    (Hungarian algorithm); pairs that share no point are not matches."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = np.flatnonzero(clusters_a != NOISE), np.flatnonzero(clusters_b != NOISE)
    if not len(rows) or not len(cols):
        return []
    scores = jaccard(table)[np.ix_(rows, cols)]
    chosen = zip(*linear_sum_assignment(scores, maximize=True))
    return [ClusterMatch(int(clusters_a[rows[i]]), int(clusters_b[cols[j]]), int(table[rows[i], cols[j]]),
                         float(scores[i, j])) for i, j in chosen if table[rows[i], cols[j]] > 0]


def compare_assignments(labels_a: np.ndarray, labels_b: np.ndarray, share: float = SPLIT_SHARE,
                        min_images: int = SPLIT_MIN_IMAGES) -> AssignmentComparison:
    """Compare two labelings (n,) of the same points: ARI, NMI, variation of information, contingency,
    best one-to-one matching, splits, merges and the points that moved.

    A cluster of A is *split* when at least ``share`` of it and at least ``min_images`` points go to
    each of two or more clusters of B; clusters of A are *merged* into a cluster of B when two or more
    of them each send at least ``share`` of themselves (and ``min_images``) into it. Unclustered points
    are never a part of either."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"labelings differ in length: {labels_a.shape} vs {labels_b.shape}")
    clusters_a, clusters_b, table = contingency(labels_a, labels_b)
    matching = match_clusters(clusters_a, clusters_b, table)
    return AssignmentComparison(
        n=len(labels_a), ari=float(adjusted_rand_score(labels_a, labels_b)),
        nmi=float(normalized_mutual_info_score(labels_a, labels_b)),
        variation_of_information=variation_of_information(table),
        clusters_a=clusters_a.tolist(), clusters_b=clusters_b.tolist(), contingency=table, matching=matching,
        splits=_parts(clusters_a, clusters_b, table, share, min_images),
        merges=_parts(clusters_b, clusters_a, table.T, share, min_images, of_source=False),
        moved=_moved(labels_a, labels_b, matching))


def variation_of_information(table: np.ndarray) -> float:
    """H(A|B) + H(B|A) = H(A) + H(B) - 2 I(A;B) in nats, from a contingency table (ka, kb)."""
    from sklearn.metrics import mutual_info_score

    if table.sum() == 0:
        return 0.0
    mutual = float(mutual_info_score(None, None, contingency=table))
    return max(0.0, _entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0)) - 2 * mutual)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _parts(clusters: np.ndarray, others: np.ndarray, table: np.ndarray, share: float, min_images: int,
           of_source: bool = True) -> list[ClusterParts]:
    """Clusters (rows of ``table``) with two or more large parts among ``others`` (its columns). A part
    is measured against its source: the row's cluster for splits, the column's cluster for merges."""
    source_size = table.sum(axis=1, keepdims=True) if of_source else table.sum(axis=0, keepdims=True)
    large = (table >= min_images) & (table >= share * source_size)
    large[:, others == NOISE] = False
    found = []
    for row in np.flatnonzero((clusters != NOISE) & (large.sum(axis=1) >= 2)):
        columns = sorted(np.flatnonzero(large[row]), key=lambda column: -table[row, column])
        found.append(ClusterParts(int(clusters[row]), [(int(others[c]), int(table[row, c])) for c in columns]))
    return found


def _moved(labels_a: np.ndarray, labels_b: np.ndarray, matching: Sequence[ClusterMatch]) -> np.ndarray:
    expected = {NOISE: NOISE} | {m.a: m.b for m in matching}
    clusters_a, inverse = np.unique(labels_a, return_inverse=True)
    # ABSENT never occurs in labels_b, so it marks every point of an unmatched cluster as moved.
    target = np.asarray([expected.get(int(c), ABSENT) for c in clusters_a], dtype=np.int64)
    return target[inverse.ravel()] != labels_b


def cluster_stability(reference: np.ndarray, repeats: Sequence[np.ndarray]) -> list[ClusterStability]:
    """Per cluster of ``reference`` (n,), unclustered left out: the mean over ``repeats`` (each (n,),
    ``ABSENT`` where a refit did not see the point) of the best Jaccard with any of the repeat's
    clusters, both restricted to the points the repeat saw. A repeat that saw none of a cluster's
    points does not count for it."""
    reference = np.asarray(reference)
    ids, sizes = np.unique(reference[reference != NOISE], return_counts=True)
    scores = np.full((len(ids), len(repeats)), np.nan)
    for r, repeat in enumerate(repeats):
        best = _best_jaccard(reference, np.asarray(repeat))
        scores[:, r] = [best.get(int(c), np.nan) for c in ids]
    return [ClusterStability(int(c), int(size), float(np.nanmean(row)) if np.isfinite(row).any() else 0.0,
                             [round(float(v), 4) for v in row]) for c, size, row in zip(ids, sizes, scores)]


def _best_jaccard(reference: np.ndarray, repeat: np.ndarray) -> dict[int, float]:
    seen = repeat != ABSENT
    clusters_a, clusters_b, table = contingency(reference[seen], repeat[seen])
    scores = jaccard(table)[:, clusters_b != NOISE]
    best = scores.max(axis=1) if scores.shape[1] else np.zeros(len(clusters_a))
    return {int(c): float(b) for c, b in zip(clusters_a, best) if c != NOISE}


def relabel(labels: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """``labels`` (n,) renamed to the clusters of ``onto`` (n,) they match one-to-one (Hungarian on
    Jaccard, over the points both saw). Unmatched clusters become unclustered; ``ABSENT`` stays."""
    labels, onto = np.asarray(labels), np.asarray(onto)
    seen = labels != ABSENT
    clusters, others, table = contingency(labels[seen], onto[seen])
    rename = {NOISE: NOISE, ABSENT: ABSENT} | {m.a: m.b for m in match_clusters(clusters, others, table)}
    present, inverse = np.unique(labels, return_inverse=True)
    return np.asarray([rename.get(int(c), NOISE) for c in present], dtype=np.int64)[inverse.ravel()]


def consensus(reference: np.ndarray, repeats: Sequence[np.ndarray]) -> Consensus:
    """The majority label of each point over ``reference`` (n,) and the ``repeats`` relabelled onto it;
    ties go to the reference's label. Memory is n x (repeats + 1) labels: no n x n co-association."""
    reference = np.asarray(reference, dtype=np.int64)
    votes = np.column_stack([reference] + [relabel(r, reference) for r in repeats])
    counts = np.zeros(votes.shape, dtype=np.int32)
    for column in range(votes.shape[1]):
        counts[:, column] = (votes == votes[:, column:column + 1]).sum(axis=1)
    counts[votes == ABSENT] = -1
    winner = counts.argmax(axis=1)  # the first maximum: the reference (column 0) wins ties
    rows = np.arange(len(votes))
    present = (votes != ABSENT).sum(axis=1)
    return Consensus(votes[rows, winner], counts[rows, winner] / np.maximum(present, 1))
