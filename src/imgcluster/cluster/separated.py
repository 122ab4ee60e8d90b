"""Small groups a coarse answer merged away, carved back out when the neighbour graph keeps them apart.

Auto mode's grid looks for clusters of 0.5-4% of the points it fits, and scores them on a sample
of 2,500, so a group of 0.2% of a collection is a few dozen points of a 15,000-point fit sample
and a handful in the score: HDBSCAN's smallest setting calls it noise or folds it into a larger
cluster, and k-means folds it into the nearest centre (issue 25: at 150,000 images every cluster
of 1.2% or less was lost). Here a fine HDBSCAN (clusters down to ``min_size`` points, excess of
mass) proposes groups, and a group is kept as a cluster of its own when, in the embedding space,
at least ``SEPARATED`` (95%) of its members' ``NEIGHBOURS`` nearest neighbours are members too: a group
that really is apart keeps its neighbours, while a piece of a larger cluster shares them with the
rest of it. Groups that already are a cluster of the coarse answer (Jaccard at least ``SAME``)
are left alone, so on collections whose clusters the grid sees, nothing changes.

Measured on bench/cluster.py's long tail (150,000 vectors, 20 large clusters and 20 of 0.1-0.5%):
on the 15,000-point fit sample the grid chose k-means with k = 30 and kept 23 of the 34 clusters
of >= 0.2% (Jaccard >= 0.8); carving took out 17 groups of 18-77 points and all 40 came out at
Jaccard >= 0.99, in ~2 s on 2 loaded cores. Why not re-examine low-confidence filings or sample
by density instead: docs/scale.md, "Small clusters".
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from .base import NOISE

log = logging.getLogger(__name__)

NEIGHBOURS = 10   # the k-NN graph the separation is measured on (the score's graph has 10 too)
# Share of a group's neighbour links that stay inside it, to be carved out. The long tail's small
# groups (bench/cluster.py --variant long-tail) kept 0.995-1.0 of theirs; pieces of one digit or of
# one photo's crops that a carving at 0.8 took apart (at 1,797 digits and 630 crops, where auto
# mode now carves nothing, see auto.py) kept 0.81-0.90 and 0.80-0.98.
SEPARATED = 0.95
SAME = 0.8        # Jaccard with a coarse cluster above which a group is that cluster
SHARE = 0.001     # smallest group looked for: 0.1% of the points fitted ...
AT_LEAST = 10     # ... and never fewer points than this (a fine HDBSCAN below 10 follows noise)
_BLOCK = 2_048    # query rows per similarity block: 2,048 x 15,000 float32 is 120 MB


@dataclass(frozen=True)
class Carved:
    """Labels (numbered 0..c-1 again) and membership probabilities after carving, one row per group
    carved out (its ``cluster``, ``size``, the cluster it was ``taken_from``: -1 for the unclustered,
    None when carving emptied that cluster, and its ``neighbours_inside`` share), and where each
    cluster of the coarse answer went (``renumbered``: coarse label -> label; emptied ones absent)."""

    labels: np.ndarray
    probabilities: np.ndarray
    groups: list[dict]
    renumbered: dict[int, int]


def smallest_group(n: int) -> int:
    """The fewest points of ``n`` fitted that a carved group may have: ``SHARE`` of n, at least ``AT_LEAST``."""
    return max(AT_LEAST, round(SHARE * n))


def carve_separated(space: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                    embeddings: np.ndarray | None = None, min_size: int | None = None,
                    max_size: int | None = None) -> Carved:
    """``labels`` (n,) of the clustering-space points ``space`` (n, c), with every well-separated
    group of ``min_size`` to ``max_size`` points that the fine HDBSCAN finds inside one coarse
    cluster (or in the noise) made a cluster of its own, numbered after the existing ones.

    ``embeddings`` (n, d), L2-normalised, same rows: the space the separation is measured in
    (cosine); without them, ``space`` (euclidean). ``max_size`` defaults to half of n."""
    from .hdbscan import HdbscanClusterer

    n = len(space)
    min_size = smallest_group(n) if min_size is None else max(2, min_size)
    max_size = n // 2 if max_size is None else max_size
    labels, probabilities = labels.copy(), probabilities.copy()
    unchanged = {int(c): int(c) for c in np.unique(labels[labels != NOISE])}
    if n < 2 * min_size:
        return Carved(labels, probabilities, [], unchanged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fine = HdbscanClusterer(min_cluster_size=min_size, min_samples=min(min_size, 5)).fit(space)
    candidates = [np.flatnonzero(fine.labels_ == g) for g in range(int(fine.labels_.max()) + 1)]
    candidates = [members for members in candidates
                  if min_size <= len(members) <= max_size and not _is_a_cluster(members, labels)]
    if not candidates:
        return Carved(labels, probabilities, [], unchanged)
    reference = np.asarray(space if embeddings is None else embeddings, dtype=np.float32)
    queried = np.concatenate(candidates)
    nearest = _nearest(reference, queried, cosine=embeddings is not None)
    row_of = {int(point): i for i, point in enumerate(queried.tolist())}
    groups, next_label = [], int(labels.max(initial=NOISE)) + 1
    for members in candidates:
        inside = float(np.isin(nearest[[row_of[int(m)] for m in members]], members).mean())
        if inside < SEPARATED:
            continue
        taken_from = np.bincount(labels[members] + 1).argmax() - 1  # the coarse cluster (or noise) it sat in
        groups.append({"cluster": next_label, "size": len(members), "taken_from": int(taken_from),
                       "neighbours_inside": round(inside, 3)})
        labels[members], probabilities[members] = next_label, fine.probabilities_[members]
        next_label += 1
    if not groups:
        return Carved(labels, probabilities, [], unchanged)
    log.info("carved out %d well-separated group(s) of %d-%d points the coarse answer had merged or left "
             "unclustered", len(groups), min(g["size"] for g in groups), max(g["size"] for g in groups))
    # A coarse cluster made only of carved groups is left empty: number the clusters 0..c-1 again,
    # as every clusterer does, in the same order.
    kept = np.unique(labels[labels != NOISE])
    new = {int(old): i for i, old in enumerate(kept.tolist())}
    labels[labels != NOISE] = np.searchsorted(kept, labels[labels != NOISE])
    for group in groups:
        group["cluster"] = new[group["cluster"]]
        group["taken_from"] = -1 if group["taken_from"] == NOISE else new.get(group["taken_from"])
    return Carved(labels, probabilities, groups, {old: new[old] for old in unchanged if old in new})


def _is_a_cluster(members: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``members`` already are (Jaccard >= ``SAME``) one cluster of ``labels``."""
    counts = np.bincount(labels[members] + 1)
    label = int(counts.argmax()) - 1
    if label == NOISE:
        return False
    overlap = int(counts.max())
    return overlap / (len(members) + int((labels == label).sum()) - overlap) >= SAME


def _nearest(reference: np.ndarray, rows: np.ndarray, cosine: bool) -> np.ndarray:
    """(len(rows), NEIGHBOURS) indices of each of ``rows``' nearest other points in ``reference``:
    exact, a block of rows at a time (the fit sample is at most a few tens of thousands)."""
    k = min(NEIGHBOURS, len(reference) - 1)
    squared = None if cosine else (reference ** 2).sum(axis=1)
    found = np.empty((len(rows), k), dtype=np.int64)
    for start in range(0, len(rows), _BLOCK):
        block = rows[start:start + _BLOCK]
        similarity = reference[block] @ reference.T
        if not cosine:  # minus the squared distance, up to a per-row constant
            similarity = 2 * similarity - squared[None, :]
        similarity[np.arange(len(block)), block] = -np.inf  # not its own neighbour
        found[start:start + len(block)] = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return found


def predict_carved(labels: np.ndarray, probabilities: np.ndarray, x: np.ndarray, fit_space: np.ndarray,
                   fitted_labels: np.ndarray, fitted_probabilities: np.ndarray, groups: list[dict],
                   renumbered: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """New points' ``labels`` and ``probabilities`` from the coarse model, after carving: a point
    joins the cluster of its nearest fitted point (``fit_space``, labelled ``fitted_labels``) when
    that point is in a carved group or the model's cluster was emptied by carving; the others keep
    the model's answer, renumbered as the carving renumbered the clusters."""
    from sklearn.neighbors import NearestNeighbors

    nearest = NearestNeighbors(n_neighbors=1).fit(fit_space).kneighbors(
        np.asarray(x, dtype=np.float32), return_distance=False)[:, 0]
    mapped = np.array([renumbered.get(int(label), -2) if label != NOISE else NOISE for label in labels])
    carved = np.isin(fitted_labels[nearest], [g["cluster"] for g in groups]) | (mapped == -2)
    probabilities = np.where(carved, fitted_probabilities[nearest], probabilities)
    return np.where(carved, fitted_labels[nearest], mapped).astype(np.int64), probabilities
