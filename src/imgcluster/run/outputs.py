"""A run's files for people: the per-image tables (clusters.csv, clusters.parquet) and report.html."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import report as report_stage
from ..store import Assignments, ClusterName, ImageRecord, RunRecord, Workspace

Progress = Callable[[int, int], None]


def write_outputs(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                  skipped: Sequence[ImageRecord], names: Mapping[int, ClusterName],
                  progress: Progress | None = None) -> dict[str, Path]:
    """Write the run's tables and report; ``progress(done, 3)``: tables, thumbnails read, report."""
    progress = progress or (lambda done, total: None)
    progress(0, 3)
    csv_path, parquet_path = ws.write_assignment_tables(record.key, assignment_table(images, assignments, names))
    progress(1, 3)
    report = write_report(ws, record, images, assignments, skipped, names, on_thumbnails=lambda: progress(2, 3))
    progress(3, 3)
    return {"csv": csv_path, "parquet": parquet_path, "report": report}


def assignment_table(images: Sequence[ImageRecord], assignments: Assignments,
                     names: Mapping[int, ClusterName]) -> dict[str, Any]:
    """The per-image table (path, cluster, name, membership_probability, x, y, how) as columns."""
    # Columns as arrays (pyarrow takes them without a Python object per cell); a name per cluster.
    clusters = np.asarray(assignments.clusters, dtype=np.int64)
    ids, inverse = np.unique(clusters, return_inverse=True)
    cluster_names = np.asarray([names[c].name if c in names else "" for c in ids.tolist()] or [""], dtype=object)
    return {"path": [r.path for r in images], "cluster": clusters,
            "name": cluster_names[inverse.reshape(-1)] if len(clusters) else np.zeros(0, dtype=object),
            "membership_probability": np.round(np.asarray(assignments.membership_probability, dtype=float), 4),
            "x": np.round(np.asarray(assignments.x, dtype=float), 4),
            "y": np.round(np.asarray(assignments.y, dtype=float), 4),
            "how": np.asarray(assignments.how_per_image(), dtype=object)}


def write_report(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                 skipped: Sequence[ImageRecord], names: Mapping[int, ClusterName] | None = None,
                 on_thumbnails: Callable[[], None] | None = None) -> Path:
    """(Re)write the run's report.html, with its newest stability measurement if any."""
    wanted = report_stage.thumbnail_ids(record, assignments)
    by_id = {r.id: r for r in images}
    thumbs = ws.thumbnails(by_id[i].content_hash for i in wanted if by_id[i].content_hash)  # type: ignore[misc]
    if on_thumbnails is not None:
        on_thumbnails()
    measured = ws.stability(record.key)
    html = report_stage.render(record, images, assignments, thumbs, skipped, names,
                               stability=measured[-1] if measured else None)
    return ws.write_run_file(record.key, "report.html", html)
