"""A finished run as the API hands it out: its typed record, images, assignments, skips, files, names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..label import choose_names
from ..store import Assignments, ClusterName, ClusterSummary, ImageRecord, Representatives, RunRecord, Workspace


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
