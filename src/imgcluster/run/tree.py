"""A run's cluster tree: built when the run is saved, named from its clusters' names, cut at a level.

A fitted run's clusters are split into leaves where they hold well separated parts
(``cluster/leaves.py``); a derived run's (an update, edit, review or follow, measured on its 2-D
map) are its leaves. A part of a cluster is named "<its cluster's name> · part N" (largest first),
a node between a cluster and its parts "<its cluster's name> · parts 1-2".
Nodes above the clusters are named from the names their clusters show, simply: one name when every
named cluster shows it; else the most specific ImageNet node above all of them (the namer's is-a tree,
``label/hierarchy.py``) when each is a node of it and that node is not too general to say anything
("dog" over "beagle" and "collie"); else ``mixed:`` and the largest leaves' names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..cluster.leaves import split_clusters
from ..cluster.tree import build_tree
from ..label.hierarchy import MIXED, PARTS, UNRECOGNISED, imagenet_hierarchy
from ..store import Assignments, ClusterName, ClusterTree, ProposedCluster, RunRecord

# A hedged namer tells clusters of one name apart as "dog · beagle": the part before is the name.
SUFFIX = " · "


def run_tree(labels: np.ndarray, space: np.ndarray, record: RunRecord, *, on_map: bool = False,
             ids: np.ndarray | None = None) -> tuple[ClusterTree, np.ndarray | None]:
    """The tree of a run about to be saved (``record``: its base record) in the space its clusters are
    measured in (a derived run's: the 2-D map), and each image's leaf (None: the leaves are the
    clusters). Only a fit's clusters are split: the parts are measured in the clustering space,
    which a derived run does not keep. ``ids``: the images' ids, which seed each cluster's split
    (``split_clusters``)."""
    seed = int((record.config.get("cluster") or {}).get("seed") or 0)
    leaves = None if on_map else split_clusters(labels, space, seed=seed, ids=ids)
    tree = build_tree(labels, space, leaves=leaves, space_name="map" if on_map else "clustering",
                      default_reason=default_reason(record))
    return tree, leaves


def stored_tree(record: RunRecord, assignments: Assignments) -> ClusterTree:
    """``record``'s tree; a run saved before imgcluster kept trees gets one built on its 2-D map
    (``space == "map"``; not stored: reading never writes)."""
    if record.tree is not None:
        return record.tree
    xy = np.column_stack([assignments.x, assignments.y])
    return build_tree(assignments.clusters, xy, space_name="map", default_reason=default_reason(record))


def image_leaves(assignments: Assignments, tree: ClusterTree) -> np.ndarray:
    """Each image's leaf of ``tree``: its cluster where the tree's leaves are the clusters (a run
    saved before finer leaves, a derived run), else the leaves stored with the assignments."""
    return assignments.clusters if len(tree.leaves) == tree.n_clusters else assignments.leaf_per_image()


def leaf_parts(tree: ClusterTree, leaves: np.ndarray) -> np.ndarray:
    """Each image's leaf as its place among its cluster's leaves (n,) uint8: the leaf is
    ``tree.leaves_under(cluster)[part]`` (ascending ids); 0 for a cluster that is one leaf and for
    unclustered images. One byte per image, where a leaf id takes four: a cluster is split into at most
    ``cluster.leaves.MAX_PARTS`` parts. ``leaves``: ``image_leaves``'s."""
    leaves = np.asarray(leaves, dtype=np.int64)
    place = np.zeros(max([*tree.leaves, 0]) + 2, dtype=np.int64)  # by leaf id + 1: unclustered (-1) reads 0
    for cluster in tree.clusters:
        parts = tree.leaves_under(cluster)
        if len(parts) > 256:
            raise ValueError(f"Cluster {cluster} has {len(parts)} leaves; a leaf's place among its cluster's is "
                             "one byte, so at most 256.")
        place[np.asarray(parts) + 1] = np.arange(len(parts))
    return place[leaves + 1].astype(np.uint8)


def tree_dict(tree: ClusterTree, names: Mapping[int, ClusterName | str]) -> dict[str, object]:
    """The tree as JSON-ready data: how it was built, the default, fine and coarse cuts' sizes, the
    run's clusters (the default cut's nodes), and every node (leaves first, then merges in order)
    with its name and ``k``, the finest cut it is a cluster of."""
    named = node_names(tree, names)
    return {"linkage": tree.linkage, "space": tree.space, "default_reason": tree.default_reason,
            "default": tree.n_clusters, "fine": len(tree.leaves), "coarse": tree.coarse, "root": tree.root,
            "clusters": tree.clusters,
            "nodes": [{**dataclasses.asdict(n), "name": named[n.id], "k": tree.k_at(n.id)} for n in tree.nodes]}


def default_reason(record: RunRecord) -> str:
    """Why the default cut is what it is: the run's own clusters, and why the run has them."""
    clustering = record.clustering or {}
    auto = clustering.get("auto") or {}
    if record.provenance.how != "fit":
        return f"the run's own clusters, as its {record.provenance.how} left them"
    if auto.get("reason"):
        return f"the run's own clusters, chosen by auto mode: {auto['reason']}"
    method = clustering.get("method") or record.config.get("cluster", {}).get("method") or "its method"
    return f"the run's own clusters, as {method} found them"


def attach_proposals(proposed: list[ProposedCluster], tree: ClusterTree) -> list[ProposedCluster]:
    """Each proposed cluster (one of the run's clusters in ``tree``) with the node it attaches under."""
    clusters = set(tree.clusters)
    return [dataclasses.replace(p, parent=tree.node(p.cluster).parent if p.cluster in clusters else None)
            for p in proposed]


def node_names(tree: ClusterTree, names: Mapping[int, ClusterName | str]) -> dict[int, str]:
    """A name for every node of ``tree``: a run's cluster's is the name it shows (``names``, by
    cluster; unnamed: "cluster N"), a part of it "<that name> · part N"; a node above the clusters
    gets one from its clusters' (see the module docstring), "node N" when none of them is named."""
    shown = {c: (n.name if isinstance(n, ClusterName) else n) for c, n in names.items()}
    clusters = set(tree.clusters)
    result: dict[int, str] = {}
    for cluster in clusters:
        result[cluster] = shown.get(cluster) or f"cluster {cluster}"
        parts = sorted(tree.leaves_under(cluster), key=lambda leaf: (-tree.node(leaf).size, leaf))
        if len(parts) > 1:
            result.update({leaf: f"{result[cluster]}{SUFFIX}part {i}" for i, leaf in enumerate(parts, 1)})
    under: dict[int, list[int]] = {c: [c] for c in clusters}
    for node in tree.nodes:  # leaves first, merges in order: children are named before parents
        if node.id in result and node.id not in clusters:  # a part of a cluster
            continue
        if node.id in clusters or not node.children:
            continue
        if not all(child in under for child in node.children):  # inside a cluster: the parts it holds
            result[node.id] = _parts_name(tree, node.id, result[_cluster_above(tree, node.id, clusters)], result)
            continue
        under[node.id] = [c for child in node.children for c in under[child]]
        result[node.id] = common_name([(shown[c], tree.node(c).size) for c in under[node.id] if shown.get(c)]) \
            or f"node {node.id}"
    return result


def _parts_name(tree: ClusterTree, node: int, cluster_name: str, result: Mapping[int, str]) -> str:
    """"<cluster's name> · parts 1-2" (or "parts 1, 3"): a node between a split cluster and its parts,
    named apart from the cluster it is inside (``result``: the parts' names, "<name> · part N")."""
    held = sorted(int(result[leaf].rsplit(" ", 1)[1]) for leaf in tree.leaves_under(node))
    run = held == list(range(held[0], held[-1] + 1))
    return f"{cluster_name}{SUFFIX}parts " + (f"{held[0]}-{held[-1]}" if run else ", ".join(map(str, held)))


def _cluster_above(tree: ClusterTree, node: int, clusters: set[int]) -> int:
    """The run's cluster that ``node`` (inside a split cluster) is part of."""
    while node not in clusters:
        node = tree.node(node).parent  # type: ignore[assignment]
    return node


def common_name(named: list[tuple[str, int]]) -> str | None:
    """One name for leaves named ``named`` ((name, size) pairs): see the module docstring; None when empty."""
    if not named:
        return None
    # "unrecognised (stopwatch?)": the guess is the leaf's own; above it only "unrecognised" holds.
    bases = [UNRECOGNISED if base.startswith(UNRECOGNISED) else base
             for base in (name.split(SUFFIX)[0].strip() for name, _ in named)]
    # An unsure name reads "beagle?": the node is "beagle", and a node above an unsure leaf reads
    # unsure too ("dog?" above "beagle?" and "collie").
    unsure = any(base.endswith("?") and not base.startswith((UNRECOGNISED, MIXED)) for base in bases)
    bases = [base if base.startswith((UNRECOGNISED, MIXED)) else base.rstrip("?") for base in bases]
    mark = "?" if unsure else ""
    if len(set(bases)) == 1:
        return bases[0] + ("" if bases[0].startswith((UNRECOGNISED, MIXED)) else mark)
    found = _common_ancestor(bases)
    if found is not None:
        return found + mark
    by_size: dict[str, int] = {}
    for base, (_, size) in zip(bases, named):
        base = base[len(MIXED):].split(",")[0].strip() if base.startswith(MIXED) else base
        by_size[base] = by_size.get(base, 0) + size
    largest = sorted(by_size, key=lambda b: (-by_size[b], b))[:PARTS]
    return MIXED + ", ".join(largest)


def _common_ancestor(bases: list[str]) -> str | None:
    """The most specific ImageNet node above every name, when each is a node and the one above is
    meaningful; None otherwise."""
    if any(base.startswith(MIXED) for base in bases):
        return None
    hierarchy = imagenet_hierarchy()
    try:
        paths = [hierarchy.ancestors(hierarchy.find(base)) for base in set(bases)]
    except KeyError:
        return None
    shared = set(paths[0]).intersection(*map(set, paths[1:]))
    lowest = next(node for node in paths[0] if node in shared)  # the root is shared by all
    return None if hierarchy.general[lowest] else hierarchy.names[lowest]
