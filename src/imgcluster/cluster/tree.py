"""A run's clusters at every scale: the cluster tree, its cuts and the levels a user names.

The run's own clusters are the leaves, so every cut is a union of them and moving along the tree
never refits. Leaves are merged by a size-weighted linkage of their centroids in the space they were
found in (Lance-Williams updates, one matrix of leaf distances): it works for every run, whichever
method made its clusters and whether or not it was edited since, where HDBSCAN's condensed tree
describes only an HDBSCAN fit's own clusters. Average linkage is the default: on bench/hierarchy.py
it matched Ward's best cuts on every set and beat its cuts at the true number of clusters on three
of six (docs/benchmarks.md#clusters-at-every-scale).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..store import ClusterTree, TreeNode
from .base import NOISE

LINKAGES = ("average", "ward")  # the first is the default
# Levels a user names besides a number of clusters and a node ("node:ID").
NAMED_LEVELS = ("default", "fine", "coarse")
NODE_PREFIX = "node:"


def build_tree(labels: np.ndarray, space: np.ndarray, *, linkage: str = "average", space_name: str = "clustering",
               default_reason: str = "") -> ClusterTree:
    """The cluster tree of ``labels`` (n,) measured in ``space`` (n, d): leaves are the clusters (noise
    left out), inner nodes their merges up to one root."""
    if linkage not in LINKAGES:
        raise ConfigError(f"No linkage called {linkage!r}. Choose one of: {', '.join(LINKAGES)}.")
    labels = np.asarray(labels)
    clustered = labels != NOISE
    leaves, inverse = np.unique(labels[clustered], return_inverse=True)
    if not len(leaves):
        return ClusterTree([], linkage, space_name, 0, default_reason)
    sizes = np.bincount(inverse.ravel(), minlength=len(leaves)).astype(np.float64)
    points = np.asarray(space)[clustered]
    # One bincount per dimension: np.add.at took 0.4 s for 150,000 5-d points, this a few ms.
    centroids = np.column_stack([np.bincount(inverse.ravel(), weights=points[:, j], minlength=len(leaves))
                                 for j in range(points.shape[1])]) / sizes[:, None]
    merges = merge_order(centroids, sizes, linkage)
    return _tree(leaves.astype(int).tolist(), sizes.astype(int).tolist(), merges, linkage, space_name, default_reason)


def merge_order(centroids: np.ndarray, sizes: np.ndarray, linkage: str = "average") -> list[tuple[int, int, float]]:
    """(a, b, height) per merge of L weighted points (L - 1 merges): a and b index the points, then
    L + i the i-th merge. Ward: the distance that grows the within-cluster sum of squares least
    (scipy's scale, sqrt(2 n_a n_b / (n_a + n_b)) times the centroid distance); average: the
    size-weighted mean distance between the centroids of the leaves merged."""
    n = np.asarray(sizes, dtype=np.float64).copy()
    count = len(n)
    c = np.asarray(centroids, dtype=np.float64)
    norms = (c * c).sum(axis=1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * c @ c.T, 0.0)  # no (L, L, d) array
    if linkage == "ward":
        dist = 2 * n[:, None] * n[None, :] / (n[:, None] + n[None, :]) * squared  # squared ward distance
    else:
        dist = np.sqrt(squared)
    np.fill_diagonal(dist, np.inf)
    # Each row's nearest other row, kept up to date: a merge looks at one vector, not the L x L matrix
    # (1,000 leaves at 150k points: 0.09 s, 1.9 s with an argmin over the matrix per merge, under
    # load). Ties go to the lowest row, then column, as that argmin did.
    nearest = np.argmin(dist, axis=1)
    best = dist[np.arange(count), nearest]
    node_of = np.arange(count)
    merges = []
    for step in range(count - 1):
        i = int(np.argmin(best))
        i, j = sorted((i, int(nearest[i])))
        height = float(dist[i, j])
        if linkage == "ward":
            total = n[i] + n[j] + n
            joined = ((n[i] + n) * dist[i] + (n[j] + n) * dist[j] - n * height) / total
            height = float(np.sqrt(max(height, 0.0)))
        else:
            joined = (n[i] * dist[i] + n[j] * dist[j]) / (n[i] + n[j])
        merges.append((int(node_of[i]), int(node_of[j]), height))
        dist[i, :], dist[:, i] = joined, joined
        dist[j, :], dist[:, j] = np.inf, np.inf
        dist[i, i] = np.inf
        n[i] += n[j]
        node_of[i] = count + step
        best[j] = np.inf
        stale = np.flatnonzero((nearest == i) | (nearest == j))
        stale = stale[np.isfinite(best[stale])]
        closer = (dist[:, i] < best) | ((dist[:, i] == best) & (i < nearest))
        nearest[closer], best[closer] = i, dist[closer, i]
        for row in [*stale.tolist(), i]:
            nearest[row] = np.argmin(dist[row])
            best[row] = dist[row, nearest[row]]
    return merges


def _tree(leaves: list[int], sizes: list[int], merges: list[tuple[int, int, float]], linkage: str,
          space_name: str, default_reason: str) -> ClusterTree:
    """The ClusterTree of ``merge_order``'s answer: inner ids after the largest leaf id."""
    first = max(leaves) + 1
    ids = leaves + [first + i for i in range(len(merges))]
    size = sizes + [0] * len(merges)
    height = [0.0] * len(leaves) + [h for _, _, h in merges]
    # Ward heights never fall along a merge order; average's can by rounding: keep them monotone so
    # a cut at k is a level of the tree.
    height = np.maximum.accumulate(np.asarray(height)).tolist()
    parent: list[int | None] = [None] * len(ids)
    children: list[list[int]] = [[] for _ in ids]
    for step, (a, b, _) in enumerate(merges):
        at = len(leaves) + step
        parent[a], parent[b] = ids[at], ids[at]
        children[at] = sorted([ids[a], ids[b]])
        size[at] = size[a] + size[b]
    top = height[-1] or 1.0
    index = {node: i for i, node in enumerate(ids)}
    nodes = [TreeNode(ids[i], parent[i], children[i], int(size[i]), float(height[i]),
                      1.0 if parent[i] is None else float((height[index[parent[i]]] - height[i]) / top))
             for i in range(len(ids))]
    return ClusterTree(nodes, linkage, space_name, coarse_k(height[len(leaves):], len(leaves)), default_reason)


def coarse_k(heights: list[float], n_leaves: int) -> int:
    """The number of clusters of the coarse cut: the largest relative jump between consecutive merge
    heights, among cuts of 2 to half the leaves (coarse is coarser than fine); 1 leaf: 1, 2-3: 2."""
    if n_leaves <= 3:
        return min(n_leaves, 2)
    best, best_gap = 2, -np.inf
    for k in range(2, n_leaves // 2 + 1):
        done, following = heights[n_leaves - k - 1], heights[n_leaves - k]  # last merge made, first undone
        gap = np.log((following + 1e-12) / (done + 1e-12))
        if gap > best_gap:
            best, best_gap = k, gap
    return best


def level_k(tree: ClusterTree, level: str | int | None) -> int:
    """The number of clusters of the cut ``level`` names: None or default (the run's own clusters, the
    leaves), fine (the same), coarse, a number of clusters, or a node ("node:12": the finest cut where
    that node is one cluster)."""
    n_leaves = len(tree.leaves)
    if level is None or level in ("default", "fine"):
        return n_leaves
    if level == "coarse":
        return tree.coarse
    text = str(level).strip()
    if text.startswith(NODE_PREFIX):
        node = text[len(NODE_PREFIX):]
        known = {str(n.id) for n in tree.nodes}
        if node not in known:
            raise ConfigError(f"The cluster tree has no node {node!r}; its nodes are {_span(tree)}. "
                              "See them with `imgcluster tree`.")
        return tree.k_at(int(node))
    try:
        k = int(text)
    except ValueError:
        raise ConfigError(f"No level called {level!r}. Give default, fine, coarse, a number of clusters "
                          "(1 to the run's clusters) or a tree node as node:ID.") from None
    if not 1 <= k <= max(n_leaves, 1) or not n_leaves:
        raise ConfigError(f"A cut at {k} clusters is impossible: the run has {n_leaves} clusters, so give "
                          f"1 to {n_leaves} (the run's own clusters are the finest level).")
    return k


def cut_labels(tree: ClusterTree, labels: np.ndarray, level: str | int | None) -> np.ndarray:
    """``labels`` (n,) of the run's clusters → the node ids of the cut ``level`` names (noise stays -1)."""
    labels = np.asarray(labels)
    if not tree.leaves:
        return labels.copy()
    owner = leaf_owner(tree, tree.cut(level_k(tree, level)))
    return np.asarray([owner.get(int(c), NOISE) for c in labels.tolist()], dtype=np.int64)


def leaf_owner(tree: ClusterTree, cut: list[int]) -> dict[int, int]:
    """Each leaf's node among the cut's."""
    chosen = set(cut)
    owner = {}
    for leaf in tree.leaves:
        node = leaf
        while node not in chosen:
            node = tree.node(node).parent  # type: ignore[assignment]
        owner[leaf] = node
    return owner


def _span(tree: ClusterTree) -> str:
    ids = sorted(n.id for n in tree.nodes)
    return f"{ids[0]} to {ids[-1]}" if ids else "none"
