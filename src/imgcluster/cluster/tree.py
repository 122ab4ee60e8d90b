"""A run's clusters at every scale: the cluster tree, its cuts and the levels a user names.

The leaves are the run's clusters, or their parts where a cluster holds well separated ones
(``leaves.split_clusters``); a split cluster is the node its parts merge up to, and all merges
inside clusters come before any between them, so the cut at the run's number of clusters is the
run itself and moving along the tree never refits. Leaves are merged by a size-weighted linkage of
their centroids in the space they were found in (Lance-Williams updates, one matrix of leaf
distances): it works for every run, whichever method made its clusters and whether or not it was
edited since, where HDBSCAN's condensed tree describes only an HDBSCAN fit's own clusters. Average
linkage is the default: on bench/hierarchy.py it matched Ward's best cuts on every set and beat its
cuts at the true number of clusters on three of six (docs/benchmarks.md#clusters-at-every-scale).
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import ConfigError
from ..store import ClusterTree, TreeNode
from .base import NOISE

log = logging.getLogger(__name__)

LINKAGES = ("average", "ward")  # the first is the default
# Levels a user names besides a number of clusters and a node ("node:ID").
NAMED_LEVELS = ("default", "fine", "coarse")
NODE_PREFIX = "node:"


def build_tree(labels: np.ndarray, space: np.ndarray, *, leaves: np.ndarray | None = None, linkage: str = "average",
               space_name: str = "clustering", default_reason: str = "") -> ClusterTree:
    """The cluster tree of ``labels`` (n,), the run's clusters, measured in ``space`` (n, d).

    ``leaves`` (n,) are each point's leaf (``leaves.split_clusters``): a cluster's own id where it is
    one leaf, else ids of its parts, each part inside one cluster; None: every cluster is a leaf.
    A split cluster's parts merge up to a node with the cluster's id, all such merges before any
    between clusters: the cut at the number of clusters (``ClusterTree.default``) is the run's clusters.
    Noise is left out; clusters merge up to one root."""
    if linkage not in LINKAGES:
        raise ConfigError(f"No linkage called {linkage!r}. Choose one of: {', '.join(LINKAGES)}.")
    labels = np.asarray(labels)
    leaves = labels if leaves is None else np.asarray(leaves)
    clustered = labels != NOISE
    leaf_ids, inverse = np.unique(leaves[clustered], return_inverse=True)
    if not len(leaf_ids):
        return ClusterTree([], linkage, space_name, 0, default_reason)
    sizes = np.bincount(inverse.ravel(), minlength=len(leaf_ids)).astype(np.float64)
    points = np.asarray(space)[clustered]
    # One bincount per dimension: np.add.at took 0.4 s for 150,000 5-d points, this a few ms.
    centroids = np.column_stack([np.bincount(inverse.ravel(), weights=points[:, j], minlength=len(leaf_ids))
                                 for j in range(points.shape[1])]) / sizes[:, None]
    cluster_of = np.zeros(len(leaf_ids), dtype=np.int64)
    cluster_of[inverse.ravel()] = labels[clustered]
    return _tree(leaf_ids.astype(int).tolist(), sizes, centroids, cluster_of, linkage, space_name, default_reason)


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


def _tree(leaves: list[int], sizes: np.ndarray, centroids: np.ndarray, cluster_of: np.ndarray, linkage: str,
          space_name: str, default_reason: str) -> ClusterTree:
    """The ClusterTree over ``leaves`` (ids ascending), each in the cluster ``cluster_of`` says.

    Merges: first those inside split clusters (all clusters' in one order of height, each cluster's
    last merge taking the cluster's id), then ``merge_order`` of the clusters' centroids. Other
    inner ids follow the largest leaf id, in merge order."""
    clusters = np.unique(cluster_of)
    members = {int(c): np.flatnonzero(cluster_of == c) for c in clusters}
    taken = set(leaves) & {int(c) for c in clusters if len(members[int(c)]) > 1}
    if taken:  # a split cluster's node takes the cluster's id
        raise ValueError(f"leaf ids {sorted(taken)} are also ids of split clusters: give a split cluster's parts new ids")
    inner = [(float(h), int(c), step, a, b) for c in clusters for step, (a, b, h) in
             enumerate(_monotone(merge_order(centroids[members[int(c)]], sizes[members[int(c)]], linkage)))]
    inner.sort(key=lambda m: (m[0], m[1], m[2]))  # each cluster's own merges keep their order
    ids: list[int] = list(leaves)
    size = sizes.astype(np.int64).tolist()
    height = [0.0] * len(leaves)
    parent: list[int | None] = [None] * len(leaves)
    children: list[list[int]] = [[] for _ in leaves]
    at_of = {int(c): {local: int(row) for local, row in enumerate(members[int(c)])} for c in clusters}
    made = {int(c): len(members[int(c)]) for c in clusters}  # local index of a cluster's next merge
    fresh = max(leaves) + 1
    node_of_cluster = {int(c): int(members[int(c)][0]) for c in clusters if len(members[int(c)]) == 1}

    def add(a: int, b: int, h: float, node_id: int) -> int:
        at = len(ids)
        ids.append(node_id)
        size.append(size[a] + size[b])
        height.append(max(h, height[a], height[b]))  # a node is never below its children
        parent.append(None)
        children.append(sorted([ids[a], ids[b]]))
        parent[a], parent[b] = node_id, node_id
        return at

    for h, c, _, a, b in inner:
        local = at_of[c]
        last = made[c] == 2 * len(members[c]) - 2
        node_id = c if last else fresh
        fresh += 0 if last else 1
        local[made[c]] = add(local[a], local[b], h, node_id)
        made[c] += 1
        if last:
            node_of_cluster[c] = local[made[c] - 1]
    top = [node_of_cluster[int(c)] for c in clusters]
    between = _monotone(merge_order(centroids_of(centroids, sizes, members, clusters),
                                    np.asarray([sizes[members[int(c)]].sum() for c in clusters]), linkage))
    for a, b, h in between:
        top.append(add(top[a], top[b], h, fresh))
        fresh += 1
    highest = max(height) or 1.0
    position = {node: i for i, node in enumerate(ids)}
    nodes = [TreeNode(ids[i], parent[i], children[i], int(size[i]), float(height[i]),
                      1.0 if parent[i] is None else float((height[position[parent[i]]] - height[i]) / highest))
             for i in range(len(ids))]
    # The merges between clusters at their own heights: a node's height is raised to its children's,
    # and a cluster's parts may lie further apart than the clusters do.
    return ClusterTree(nodes, linkage, space_name, coarse_k([h for _, _, h in between], len(clusters)),
                       default_reason, default=len(clusters))


def _monotone(merges: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """``merges`` with heights that never fall along the order (average linkage's can, by rounding):
    a cut at k is then a level of the tree."""
    heights = np.maximum.accumulate([h for _, _, h in merges]) if merges else []
    return [(a, b, float(h)) for (a, b, _), h in zip(merges, heights)]


def centroids_of(centroids: np.ndarray, sizes: np.ndarray, members: dict[int, np.ndarray],
                 clusters: np.ndarray) -> np.ndarray:
    """Each cluster's centroid: the size-weighted mean of its leaves' centroids."""
    return np.stack([(centroids[members[int(c)]] * sizes[members[int(c)], None]).sum(axis=0)
                     / sizes[members[int(c)]].sum() for c in clusters])


def coarse_k(heights: list[float], n_clusters: int) -> int:
    """The number of clusters of the coarse cut: of the cuts from 2 clusters to one fewer than the
    run's ``n_clusters`` (coarse is coarser than the run's own clusters; 2 when it has 2 or fewer),
    the one before the largest relative jump in merge height, ``heights`` being the linkage heights
    of the merges between the run's clusters, in merge order (n_clusters - 1 of them). Measured on
    bench/hierarchy.py against the rule it replaced (cuts of 2 to half the clusters), it found each
    set's coarse truth as well as the cut at the true number or better, where the old rule fell below
    it on every set (docs/benchmarks.md#clusters-at-every-scale)."""
    if n_clusters <= 3:
        return min(n_clusters, 2)
    gaps = {k: np.log((heights[n_clusters - k] + 1e-12) / (heights[n_clusters - k - 1] + 1e-12))  # undone / made
            for k in range(2, n_clusters)}
    return max(gaps, key=lambda k: (gaps[k], -k))


def level_k(tree: ClusterTree, level: str | int | None) -> int:
    """The number of clusters of the cut ``level`` names: None or default (the run's own clusters),
    fine (the leaves: the run's clusters, split where they hold well separated parts), coarse, a
    number of clusters (1 to the leaves), or a node ("node:12": the finest cut where that node is one
    cluster)."""
    n_leaves = len(tree.leaves)
    if level is None or level == "default":
        return tree.n_clusters
    if level == "fine":
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
                          "(1 to the tree's leaves) or a tree node as node:ID.") from None
    if not 1 <= k <= max(n_leaves, 1) or not n_leaves:
        raise ConfigError(f"A cut at {k} clusters is impossible: {_finest(tree)}, so give 1 to {n_leaves}.")
    return k


def _finest(tree: ClusterTree) -> str:
    """The tree's finest level in words."""
    n_leaves = len(tree.leaves)
    if n_leaves == tree.n_clusters:
        return f"the run has {n_leaves} clusters and they are its tree's leaves (the finest level)"
    return f"the run has {tree.n_clusters} clusters and its tree {n_leaves} leaves (the finest level)"


def cut_labels(tree: ClusterTree, leaves: np.ndarray, level: str | int | None) -> np.ndarray:
    """Each image's leaf (n,; ``Assignments.leaf_per_image``) → the node ids of the cut ``level``
    names (noise stays -1). An id of a node above the cut (a run's cluster given for its leaves, at
    a level finer than the clusters) stays itself; an id that is no node of the tree is cut as -1,
    with a warning."""
    leaves = np.asarray(leaves)
    if not tree.leaves:
        return leaves.copy()
    owner = node_owner(tree, tree.cut(level_k(tree, level)))
    ids, inverse = np.unique(leaves, return_inverse=True)
    known = {n.id for n in tree.nodes}
    strays = sorted(int(c) for c in ids.tolist() if c != NOISE and int(c) not in known)
    if strays:  # passed through, they would look like clusters of the cut
        log.warning("cutting the cluster tree: %d leaf id(s) are no node of it (%s); their images are cut as "
                    "unclustered", len(strays), ", ".join(map(str, strays[:10])))
    cut = {int(c): owner.get(int(c), int(c) if int(c) in known else NOISE) for c in ids.tolist()}
    return np.asarray([cut[int(c)] for c in ids.tolist()], dtype=np.int64)[inverse.ravel()]


def node_owner(tree: ClusterTree, cut: list[int]) -> dict[int, int]:
    """Each node at or below the cut's nodes → its node among the cut's."""
    owner = {}
    todo = [(node, node) for node in cut]
    while todo:
        node, top = todo.pop()
        owner[node] = top
        todo.extend((child, top) for child in tree.node(node).children)
    return owner


def _span(tree: ClusterTree) -> str:
    ids = sorted(n.id for n in tree.nodes)
    return f"{ids[0]} to {ids[-1]}" if ids else "none"
