"""Cohesive groups: the largest subtrees of an average-linkage tree (cosine) whose members are, on
average, at least as similar to each other as a given bar. No seed, no layout: small changes in the
input floats move a group's border only where a merge sits within those changes of the bar.

Used to propose new clusters in a living collection (``api/living.py``): there the bar is how
cohesive the run's own clusters are, so a proposed cluster is as tight as the clusters the user
already has. UMAP + HDBSCAN, the fit's recipe, draws groups that depend on the seed and on the
last digits of the floats when it sees only a few dozen points (measured on the 47 digits an
update held in tests/test_update.py, 34 of them 8s: every seed 0-5 gave two groups of 65-80% 8s,
and 20 float16 nudges of the embeddings 18 different pairs; at the bars the run's clusters set,
this gives 26 8s and a 9 in one group, 5 9s in another, under every nudge).
"""

from __future__ import annotations

import numpy as np

from .base import NOISE

# The pairwise distances of this many points take ~16 MB (float64) and, with the tree, ~3 s for
# 1,280-d vectors (scipy's pdist, measured on 2 loaded cores).
TREE_UP_TO = 2_000
# A member's probability is the similarity-weighted share of these nearest points in its group.
PROBABILITY_NEIGHBOURS = 10


def mean_pairwise_similarity(vectors: np.ndarray) -> float:
    """Mean cosine similarity over the distinct pairs of L2-normalised ``vectors`` (n, d); 1 for n < 2."""
    n = len(vectors)
    if n < 2:
        return 1.0
    total = np.asarray(vectors, dtype=np.float64).sum(axis=0)
    # sum over all ordered pairs = |sum of vectors|^2; the n self-pairs are 1 each.
    return float((total @ total - n) / (n * (n - 1)))


def cohesive_groups(vectors: np.ndarray, min_cohesion: float, min_size: int,
                    min_member_similarity: float = -1.0) -> np.ndarray:
    """Labels (n,) of L2-normalised ``vectors`` (n, d), ``NOISE`` outside every group.

    A group is a subtree of the average-linkage tree whose mean pairwise cosine similarity reaches
    ``min_cohesion``, with at least ``min_size`` members, and is the largest such subtree: the tree
    is read from the root down, and a subtree below the bar is split into its two children.
    A mean tolerates a few strays (one unrelated point lowers a tight group of 30 by a few
    hundredths), so members whose mean similarity to the rest of their group is below
    ``min_member_similarity`` are then left out, and the group with them if fewer than
    ``min_size`` remain.
    Groups are numbered by their smallest member, so the numbering does not depend on the tree's
    internal order. Memory and time grow as n²: callers split more than ``TREE_UP_TO`` points first.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    n = len(vectors)
    labels = np.full(n, NOISE, dtype=np.int64)
    if n < max(2, min_size):
        return labels
    x = np.asarray(vectors, dtype=np.float64)
    # Clipped: rounding can make a distance a hair negative, which linkage refuses.
    tree = linkage(np.clip(pdist(x, "cosine"), 0.0, 2.0), "average")
    size = np.ones(2 * n - 1)
    pair_sum = np.zeros(2 * n - 1)  # summed similarity over a subtree's distinct pairs
    for i, (a, b, distance, count) in enumerate(tree):
        a, b = int(a), int(b)
        size[n + i] = count
        # An average-linkage height is the mean distance across the two children's pairs.
        pair_sum[n + i] = pair_sum[a] + pair_sum[b] + (1.0 - distance) * size[a] * size[b]
    cohesion = pair_sum / np.maximum(size * (size - 1) / 2, 1)
    groups = []
    pending = [2 * n - 2]
    while pending:
        node = pending.pop()
        if size[node] < min_size:
            continue
        if node < n or cohesion[node] >= min_cohesion:
            groups.append(_leaves(tree, node, n))
        else:
            pending += [int(tree[node - n, 0]), int(tree[node - n, 1])]
    kept = [members for members in (_without_strays(x, group, min_member_similarity) for group in groups)
            if len(members) >= min_size]
    for number, members in enumerate(sorted(kept, key=min)):
        labels[members] = number
    return labels


def member_similarity(vectors: np.ndarray) -> np.ndarray:
    """Each of L2-normalised ``vectors`` (n, d): its mean cosine similarity to the other n - 1."""
    n = len(vectors)
    x = np.asarray(vectors, dtype=np.float64)
    if n < 2:
        return np.ones(n)
    return (x @ x.sum(axis=0) - 1.0) / (n - 1)


def _without_strays(x: np.ndarray, members: list[int], min_member_similarity: float) -> list[int]:
    fit = member_similarity(x[members])
    return [m for m, f in zip(members, fit) if f >= min_member_similarity]


def _leaves(tree: np.ndarray, node: int, n: int) -> list[int]:
    found, pending = [], [node]
    while pending:
        k = pending.pop()
        if k < n:
            found.append(k)
        else:
            pending += [int(tree[k - n, 0]), int(tree[k - n, 1])]
    return found


def neighbour_agreement(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Membership probability (n,) of each grouped point: the similarity-weighted share of its
    ``PROBABILITY_NEIGHBOURS`` nearest other points that are in its group, as the k-NN predictor
    measures a filed image's; 0 for ``NOISE``."""
    n = len(vectors)
    probabilities = np.zeros(n)
    grouped = np.flatnonzero(labels != NOISE)
    if n < 2 or not len(grouped):
        return probabilities
    k = min(PROBABILITY_NEIGHBOURS, n - 1)
    x = np.asarray(vectors, dtype=np.float64)
    similarity = x[grouped] @ x.T
    similarity[np.arange(len(grouped)), grouped] = -np.inf  # not its own neighbour
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    weights = np.clip(np.take_along_axis(similarity, nearest, 1), 0.0, None)
    same = labels[nearest] == labels[grouped][:, None]
    probabilities[grouped] = (weights * same).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    return probabilities
