"""A finished run as the API hands it out: its typed record, images, assignments, skips, files, names."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cluster.base import NOISE
from ..cluster.tree import cut_labels
from ..errors import ConfigError
from ..label import choose_names
from ..store import (Assignments, ClusterName, ClusterSummary, ClusterTree, ImageRecord, Representatives, RunRecord,
                     Workspace)
from .tree import image_leaves, node_names, stored_tree


@dataclass(frozen=True)
class Run:
    """A finished run, as stored: its record, images and assignments (aligned), skips, files, and the
    name each cluster shows (manual first, else the newest automatic one; unnamed clusters absent)."""

    record: RunRecord
    workspace: Path
    images: list[ImageRecord]
    assignments: Assignments
    skipped: list[ImageRecord] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    names: dict[int, ClusterName] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.record.key

    def clusters(self) -> list[ClusterSummary]:
        """Cluster summaries (largest first, unclustered last)."""
        return list(self.record.clusters)

    def representatives(self) -> dict[int, Representatives]:
        """Each cluster's most central, most probable and diverse images (catalogue ids), by cluster."""
        return {r.cluster: r for r in self.record.representatives}

    @property
    def warnings(self) -> list[str]:
        """What is wrong with the run's answer (no cluster, one cluster, most images unclustered), each
        with what to try; empty when nothing is. Stored with the run."""
        return list(self.record.warnings)

    @functools.cached_property
    def tree(self) -> ClusterTree:
        """The run's clusters at every scale: its leaves are the clusters, or parts of a cluster where
        it holds well separated ones (the cluster is then the node its parts merge up to, id
        unchanged); inner nodes merge the clusters up to the whole collection, each with its size and
        persistence. A run saved before imgcluster kept trees gets one built now on its 2-D map
        (``tree.space == "map"``), not stored."""
        return stored_tree(self.record, self.assignments)

    def cut(self, level: str | int | None = None) -> np.ndarray:
        """Each image's cluster (aligned with ``images``) at ``level``: None or "default" (the run's own
        clusters), "fine" (the tree's leaves: finer than the clusters where they hold well separated
        parts), "coarse" (the tree's clearest coarser level), a number of clusters (1 to the leaves),
        or a tree node as "node:ID" (the finest cut where that node is one cluster). Each cluster of
        the cut carries its tree node's id (the run's clusters keep theirs); -1 stays unclustered.
        Nothing is refitted."""
        try:
            return cut_labels(self.tree, image_leaves(self.assignments, self.tree), level)
        except ConfigError as error:  # runs compare cuts two runs: say whose tree refused
            raise ConfigError(f"Run {self.key}: {error}") from None

    def at_level(self, level: str | int | None) -> "Run":
        """The run seen at ``level`` (see ``cut``): its assignments carry the cut's clusters and its
        names the cut's nodes' (an inner node's source is "tree"); the record stays the run's own.
        None or "default": the run itself. Exports, ``evaluate`` and ``compare_runs`` read runs so."""
        if level is None or level == "default":
            return self
        labels, named, clusters = self.cut(level), self.node_names(), set(self.tree.clusters)
        # A node none of whose clusters is named stays unnamed, as an unnamed cluster does. Other
        # node ids follow the largest leaf id, so self.names (the clusters') applies to clusters only.
        names = {}
        for node in set(labels.tolist()) - {NOISE}:
            inside = next((c for c in self.tree.ancestors(node) if c in clusters), None)  # a part of a cluster
            if node in clusters and node in self.names:
                names[node] = self.names[node]
            elif (inside in self.names) if inside is not None else (node not in clusters
                                                                      and named[node] != f"node {node}"):
                names[node] = ClusterName(node, named[node], "tree")
        seen = dataclasses.replace(self, assignments=dataclasses.replace(self.assignments, clusters=labels),
                                   names=names)
        seen.__dict__["tree"] = self.tree  # the same tree (a lazily built one is not built twice)
        return seen

    def node_names(self) -> dict[int, str]:
        """A name for every node of the tree: leaves show their cluster's name, inner nodes a name their
        leaves share (their common ImageNet class, or "mixed: ...")."""
        return node_names(self.tree, self.names)


def stored_run(ws: Workspace, record: RunRecord) -> Run:
    """``record``'s run as stored in ``ws``: its images, assignments, the collection's skips, its files
    and the names its clusters show."""
    assignments = ws.assignments(record.key)
    by_id = {r.id: r for r in ws.images(ids=assignments.image_ids.tolist())}
    images = [by_id[i] for i in assignments.image_ids.tolist()]
    folder = ws.run_dir(record.key)
    outputs = {name: folder / file for name, file in
               (("csv", "clusters.csv"), ("parquet", "clusters.parquet"), ("report", "report.html"))
               if (folder / file).exists()}
    skipped = sorted((r for r in ws.known_files(record.root).values() if r.status == "skipped"),
                     key=lambda r: r.path)
    return Run(record, ws.path, images, assignments, skipped, outputs, choose_names(ws.names(record.key)))
