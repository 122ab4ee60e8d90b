"""A run's cluster tree: built when the run is saved, named from its leaves' names, cut at a level.

Inner nodes are named from the names their leaves show, simply: one name when every named leaf
shows it; else the most specific ImageNet node above all of them (the namer's is-a tree,
``label/hierarchy.py``) when each is a node of it and that node is not too general to say anything
("dog" over "beagle" and "collie"); else ``mixed:`` and the largest leaves' names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..cluster.tree import build_tree
from ..label.hierarchy import MIXED, PARTS, UNRECOGNISED, imagenet_hierarchy
from ..store import Assignments, ClusterName, ClusterTree, ProposedCluster, RunRecord

# A hedged namer tells clusters of one name apart as "dog · beagle": the part before is the name.
SUFFIX = " · "


def run_tree(labels: np.ndarray, space: np.ndarray, record: RunRecord, *, on_map: bool = False) -> ClusterTree:
    """The tree of a run about to be saved (``record``: its base record) in the space its clusters are
    measured in (a derived run's: the 2-D map)."""
    return build_tree(labels, space, space_name="map" if on_map else "clustering",
                      default_reason=default_reason(record))


def stored_tree(record: RunRecord, assignments: Assignments) -> ClusterTree:
    """``record``'s tree; a run saved before imgcluster kept trees gets one built on its 2-D map
    (``space == "map"``; not stored: reading never writes)."""
    if record.tree is not None:
        return record.tree
    xy = np.column_stack([assignments.x, assignments.y])
    return build_tree(assignments.clusters, xy, space_name="map", default_reason=default_reason(record))


def tree_dict(tree: ClusterTree, names: Mapping[int, ClusterName | str]) -> dict[str, object]:
    """The tree as JSON-ready data: how it was built, the default and coarse cuts' sizes, and every
    node (leaves first, then merges in order) with its name and ``k``, the finest cut it is a cluster of."""
    named = node_names(tree, names)
    return {"linkage": tree.linkage, "space": tree.space, "default_reason": tree.default_reason,
            "default": len(tree.leaves), "coarse": tree.coarse, "root": tree.root,
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
    """Each proposed cluster (a leaf of ``tree``) with the node it attaches under."""
    leaves = set(tree.leaves)
    return [dataclasses.replace(p, parent=tree.node(p.cluster).parent if p.cluster in leaves else None)
            for p in proposed]


def node_names(tree: ClusterTree, names: Mapping[int, ClusterName | str]) -> dict[int, str]:
    """A name for every node of ``tree``: a leaf's is the name its cluster shows (``names``, by cluster;
    unnamed: "cluster N"); an inner node's comes from its leaves' (see the module docstring), and is
    "node N" when none of them is named."""
    shown = {c: (n.name if isinstance(n, ClusterName) else n) for c, n in names.items()}
    result: dict[int, str] = {}
    under: dict[int, list[int]] = {}
    for node in tree.nodes:  # leaves first, merges in order: children are named before parents
        if not node.children:
            under[node.id] = [node.id]
            result[node.id] = shown.get(node.id) or f"cluster {node.id}"
            continue
        under[node.id] = [leaf for child in node.children for leaf in under[child]]
        sizes = {leaf: tree.node(leaf).size for leaf in under[node.id]}
        result[node.id] = common_name([(shown[leaf], sizes[leaf]) for leaf in under[node.id] if shown.get(leaf)]) \
            or f"node {node.id}"
    return result


def common_name(named: list[tuple[str, int]]) -> str | None:
    """One name for leaves named ``named`` ((name, size) pairs): see the module docstring; None when empty."""
    if not named:
        return None
    # "unrecognised (stopwatch?)": the guess is the leaf's own; above it only "unrecognised" holds.
    bases = [UNRECOGNISED if base.startswith(UNRECOGNISED) else base
             for base in (name.split(SUFFIX)[0].strip() for name, _ in named)]
    if len(set(bases)) == 1:
        return bases[0]
    found = _common_ancestor(bases)
    if found is not None:
        return found
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
