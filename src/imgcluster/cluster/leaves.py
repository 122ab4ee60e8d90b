"""Leaves finer than a run's clusters: each cluster split into parts where measurement supports it.

Auto mode keeps one partition; when it keeps a few large clusters that each hold clear groups (six
super-clusters of four clusters each, bench/hierarchy.py), a tree whose leaves are those clusters
cannot go below them. So each cluster is split by k-means in the space it was found in, at the k
(2 to ``MAX_PARTS``) whose split has the best silhouette, and the split is kept only when that
silhouette beats the same search on a featureless stand-in for the cluster by ``MARGIN``: as many
points drawn from one Gaussian with the cluster's mean and covariance. A fixed silhouette bar
cannot do it: k-means splits one elongated blob with a silhouette of 0.4-0.56 (a Gaussian 3:1, a
line segment), as high as it splits clusters that are truly apart; the stand-in has the cluster's
shape, so only parts beyond what its shape gives count. Every part must also hold ``MIN_PART``
images and a cluster split ``MIN_POINTS``; a stand-in with no such split is measured with half the
floor, and with none even then the cluster stays whole. The measurements behind ``MARGIN`` and
``MIN_PART`` are in docs/benchmarks.md#clusters-at-every-scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import NOISE

MAX_PARTS = 6      # the most parts one cluster is split into
MARGIN = 0.2       # how much the split's silhouette must beat the Gaussian stand-in's
MIN_PART = 10      # the fewest images a part holds
FIT_SAMPLE = 500   # k-means and the silhouettes measured on at most this many of a cluster's points
# The fewest images a cluster split is tried on: with two parts of MIN_PART each, k-means on its
# Gaussian stand-in rarely finds parts that large, and chance parts are then all there is to see.
MIN_POINTS = 4 * MIN_PART
MAX_DIMS = 64      # above this many dimensions a split is measured on the sample's top AXES principal axes
AXES = 32


def split_clusters(labels: np.ndarray, space: np.ndarray, *, seed: int = 0, margin: float = MARGIN,
                   ids: np.ndarray | None = None) -> np.ndarray:
    """Each point's leaf (n,): its cluster's id where the cluster stays whole, else a new id (after
    the largest cluster id; a split cluster's parts numbered in turn, largest first). Noise stays -1.
    ``ids`` (n,): the points' image ids (None: their rows); a cluster's split is seeded by ``seed`` and
    its smallest id, so a cluster keeps its parts when a refit (``--follow``) renumbers it."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    labels = np.asarray(labels, dtype=np.int64)
    ids = np.arange(len(labels)) if ids is None else np.asarray(ids, dtype=np.int64)
    leaves = labels.copy()
    clusters = sorted(set(labels.tolist()) - {NOISE})
    next_id = (max(clusters) + 1) if clusters else 0
    # One BLAS thread: the products are of a few hundred points, and waking threads for each cost 5.5
    # s for 21 clusters on the loaded 2-core machine, 1.7 s with one; the result then depends on no
    # thread count.
    with threadpool_limits(limits=1, user_api="blas"):
        for cluster in clusters:
            rows = np.flatnonzero(labels == cluster)
            own_seed = int(np.random.SeedSequence([seed, int(ids[rows].min())]).generate_state(1)[0])
            parts = split_one(np.asarray(space)[rows], seed=own_seed, margin=margin)
            if parts is None:
                continue
            order = np.argsort(-np.bincount(parts), kind="stable")  # largest part first
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            leaves[rows] = next_id + rank[parts]
            next_id += len(order)
    return leaves


def split_one(x: np.ndarray, *, seed: int = 0, margin: float = MARGIN) -> np.ndarray | None:
    """The parts (m,) of one cluster's points ``x`` (m, d) when their best k-means split beats the
    Gaussian stand-in's by ``margin`` (see the module docstring), else None."""
    if len(x) < MIN_POINTS:
        return None
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(len(x), FIT_SAMPLE, replace=False))] if len(x) > FIT_SAMPLE else x
    sample = np.asarray(sample, dtype=np.float64)
    project = principal_axes(sample)
    sample = project(sample)
    floor = MIN_PART * len(sample) / len(x)  # a part's share of the sample, at the fewest images
    parts, score = best_split(sample, floor, seed)
    if parts is None:
        return None
    stand_in = rng.multivariate_normal(sample.mean(axis=0), np.atleast_2d(np.cov(sample.T)), size=len(sample),
                                       method="eigh")
    stand_in_parts, baseline = best_split(stand_in, floor, seed)
    if stand_in_parts is None:
        # Its "score" of -1 is no measurement (a bar of -0.8 split one Gaussian blob of 22-25 points
        # ~1 time in 5): measure the stand-in's best split with half the floor; none even then, no split.
        stand_in_parts, baseline = best_split(stand_in, floor / 2, seed)
    if stand_in_parts is None or score < baseline + margin:
        return None
    centres = np.stack([sample[parts == part].mean(axis=0) for part in range(parts.max() + 1)])
    return nearest_centre(x, centres, project)


def principal_axes(sample: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The map of points (m, d) into the space a split is measured in: the points themselves up to
    ``MAX_DIMS`` dimensions, else their coordinates on the sample's top ``AXES`` principal axes. In
    the full embedding space (1,280-d) the stand-in's covariance, the distances and the final
    assignment grow with d; the parts that matter lie along the axes of most variance."""
    if sample.shape[1] <= MAX_DIMS:
        return lambda points: np.asarray(points, dtype=np.float64)
    mean = sample.mean(axis=0)
    _, _, axes = np.linalg.svd(sample - mean, full_matrices=False)  # deterministic: LAPACK, one thread
    axes = axes[:AXES]
    return lambda points: (np.asarray(points, dtype=np.float64) - mean) @ axes.T


def nearest_centre(x: np.ndarray, centres: np.ndarray, project: Callable[[np.ndarray], np.ndarray],
                   chunk: int = 1024) -> np.ndarray:
    """Each point's nearest centre (m,), by |c|^2 - 2 x.c (|x|^2 is every centre's) a chunk of points
    at a time: no (m, k, d) array (a 20,000-image cluster in 1,280-d made one of 694 MiB)."""
    squared = (centres * centres).sum(axis=1)
    return np.concatenate([np.argmin(squared[None, :] - 2 * project(x[start:start + chunk]) @ centres.T, axis=1)
                           for start in range(0, len(x), chunk)]) if len(x) else np.zeros(0, dtype=np.int64)


def best_split(x: np.ndarray, floor: float, seed: int) -> tuple[np.ndarray | None, float]:
    """The k-means split of ``x`` (k from 2 to ``MAX_PARTS``, every part at least ``floor`` points)
    with the best silhouette, and that silhouette (None, -1: no split qualifies)."""
    distances = np.sqrt(np.maximum(pairwise_squared(x, x), 0.0))
    best, best_score = None, -1.0
    for k in range(2, min(MAX_PARTS, int(len(x) // max(floor, 1))) + 1):
        parts = kmeans(x, k, seed)
        if np.bincount(parts, minlength=k).min() < floor:
            continue
        score = silhouette(distances, parts, k)
        if score > best_score:
            best, best_score = parts, score
    return best, best_score


# Small k-means and silhouette in numpy: scikit-learn's cost 0.3-0.5 s per call on 500 points of a
# loaded 2-core machine (its OpenMP threads wait on one another), 100 times what the work takes.

def kmeans(x: np.ndarray, k: int, seed: int, starts: int = 2, steps: int = 50) -> np.ndarray:
    """Labels (m,) of the lowest-inertia of ``starts`` Lloyd runs from k-means++ seeds on ``x`` (m, d)."""
    rng = np.random.default_rng(seed)
    norms = (x * x).sum(axis=1)
    best, best_inertia = np.zeros(len(x), dtype=np.int64), np.inf
    for _ in range(starts):
        centres, labels = plus_plus(x, norms, k, rng), None
        for _ in range(steps):
            # |x - c|^2 less |x|^2, which every centre shares: the nearest centre is its argmin.
            partial = (centres * centres).sum(axis=1)[None, :] - 2 * x @ centres.T
            assigned = np.argmin(partial, axis=1)
            if labels is not None and np.array_equal(assigned, labels):
                break  # converged: the centres would not move
            labels = assigned
            counts = np.bincount(labels, minlength=k)
            sums = np.eye(k)[labels].T @ x
            centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        inertia = float(norms.sum() + partial[np.arange(len(x)), labels].sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def plus_plus(x: np.ndarray, norms: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: each next centre drawn with probability proportional to its squared distance
    to the nearest centre so far (``norms``: each point's squared norm)."""
    centres = [x[rng.integers(len(x))]]
    nearest = np.full(len(x), np.inf)
    for _ in range(k - 1):
        last = centres[-1]
        nearest = np.minimum(nearest, np.maximum(norms + last @ last - 2 * x @ last, 0.0))  # rounding: never below 0
        total = nearest.sum()
        centres.append(x[rng.choice(len(x), p=nearest / total)] if total > 0 else x[rng.integers(len(x))])
    return np.stack(centres)


def silhouette(distances: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The mean silhouette of ``labels`` (m,) given the points' distances (m, m); 0 for a point alone in its part."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = distances @ np.eye(k)[labels]  # (m, k): each point's summed distance to each part
    own = counts[labels] - 1
    within = sums[np.arange(len(labels)), labels] / np.maximum(own, 1)
    means = sums / np.maximum(counts, 1)
    means[np.arange(len(labels)), labels] = np.inf
    nearest_other = means.min(axis=1)
    score = (nearest_other - within) / np.maximum(np.maximum(within, nearest_other), 1e-12)
    return float(np.where(own > 0, score, 0.0).mean())


def pairwise_squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b))."""
    return (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2 * a @ b.T
