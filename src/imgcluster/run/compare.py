"""Comparing two runs' clusters and measuring how stable a run's clusters are under refits: plain
functions on label arrays (contingency tables, one-to-one matching by Jaccard, splits and merges,
variation of information, per-cluster stability and a consensus labelling)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..cluster import NOISE

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
