"""Hand edits of a run: merge clusters, move images to another cluster. Each edit is saved as a new
run derived from the edited one (``info["edit"]["parent"]``): the original stays as it was, so the two
can be compared (``compare_runs``), and nothing is refitted.

Cluster ids keep their meaning in the derived run, so the parent's names carry over (a merged-away
cluster's names go with it). The predictor is the parent's, relabelled: new images are filed into
the edited clusters.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cluster import NOISE
from ..errors import ConfigError
from ..label import choose_names
from ..represent import representatives
from ..runs import answer_warnings, internal_metrics, new_run_key, package_versions, summarise_clusters
from ..store import Assignments, Workspace
from . import job
from .steps import Run

log = logging.getLogger(__name__)

MOVED = "moved"  # the ``how`` of an image a person put in its cluster


def merge_clusters(clusters: Sequence[int], key: str | None = None, *, into: int | None = None,
                   path: str | os.PathLike[str] | None = None, workspace: str | os.PathLike[str] | None = None,
                   run_key: str | None = None) -> Run:
    """Merge ``clusters`` (two or more ids) of a run (the newest with clusters when ``key`` is None) into one,
    ``into`` (default: the first given), and save the result as a new derived run."""
    clusters = [int(c) for c in dict.fromkeys(clusters)]
    into = clusters[0] if into is None else int(into)
    if len(clusters) < 2:
        raise ConfigError(f"Merging needs two clusters or more; got {clusters}.")
    if into not in clusters:
        raise ConfigError(f"Merge into one of the merged clusters {clusters}; got {into}.")
    parent = job.load_run(key, path=path, workspace=workspace)
    _check_known(parent, clusters, allow_noise=False)
    labels = np.asarray(parent.assignments.clusters, dtype=np.int64).copy()
    labels[np.isin(labels, clusters)] = into
    edit = {"action": "merge", "clusters": clusters, "into": into}
    return _save_edit(parent, labels, np.asarray(parent.assignments.membership_probability, dtype=np.float64),
                      parent.assignments.how_per_image(), edit, dropped=set(clusters) - {into}, run_key=run_key)


def move_images(image_ids: Sequence[int], cluster: int, key: str | None = None, *,
                path: str | os.PathLike[str] | None = None, workspace: str | os.PathLike[str] | None = None,
                run_key: str | None = None) -> Run:
    """Put images of a run (the newest with clusters when ``key`` is None) in ``cluster`` (-1: unclustered), with
    membership probability 1 (0 when unclustered) and ``how`` = moved, saved as a new derived run."""
    parent = job.load_run(key, path=path, workspace=workspace)
    _check_known(parent, [int(cluster)], allow_noise=True)
    ids = np.asarray(parent.assignments.image_ids, dtype=np.int64)
    wanted = np.unique(np.asarray(list(image_ids), dtype=np.int64))
    rows = np.flatnonzero(np.isin(ids, wanted))
    if len(rows) != len(wanted):
        missing = np.setdiff1d(wanted, ids)[:10].tolist()
        raise ConfigError(f"Run {parent.key} has no image with id {', '.join(map(str, missing))}.")
    if not len(rows):
        raise ConfigError("Choose at least one image to move.")
    labels = np.asarray(parent.assignments.clusters, dtype=np.int64).copy()
    probabilities = np.asarray(parent.assignments.membership_probability, dtype=np.float64).copy()
    how = parent.assignments.how_per_image()
    labels[rows] = cluster
    probabilities[rows] = 0.0 if cluster == NOISE else 1.0
    for row in rows.tolist():
        how[row] = MOVED
    edit = {"action": "move", "cluster": int(cluster), "image_ids": wanted.tolist()}
    return _save_edit(parent, labels, probabilities, how, edit, dropped=set(), run_key=run_key)


def _check_known(run: Run, clusters: Sequence[int], *, allow_noise: bool) -> None:
    known = set(np.unique(np.asarray(run.assignments.clusters)).tolist()) - {NOISE}
    unknown = [c for c in clusters if c not in known and not (allow_noise and c == NOISE)]
    if unknown:
        raise ConfigError(f"Run {run.key} has no cluster {', '.join(map(str, unknown))}; its clusters are "
                          f"{', '.join(map(str, sorted(known))) or 'none'}.")


def _save_edit(parent: Run, labels: np.ndarray, probabilities: np.ndarray, how: list[str], edit: dict[str, Any],
               *, dropped: set[int], run_key: str | None) -> Run:
    ws = Workspace.open(parent.workspace)
    try:
        ws.lock()
        job._check_new_key(ws, run_key)
        key = run_key or new_run_key()
        started = time.perf_counter()
        ids = np.asarray(parent.assignments.image_ids, dtype=np.int64)
        xy = np.column_stack([parent.assignments.x, parent.assignments.y]).astype(np.float64)
        # The parent's clustering space is not stored: summaries and silhouette use the 2-D map.
        summaries = summarise_clusters(ids, labels, probabilities, xy)
        metrics = {**internal_metrics(xy, labels, probabilities), "silhouette_on": "map"}
        info = dict(parent.record.info)
        info.pop("update", None)
        info.update({"metrics": metrics, "versions": package_versions(),
                     "warnings": answer_warnings(len(ids), metrics, info.get("clustering", {}),
                                                 parent.record.config.get("preset")),
                     "clusters": [dataclasses.asdict(s) for s in summaries],
                     "representatives": [dataclasses.asdict(r) for r in representatives(ids, labels, probabilities,
                                                                                          xy)],
                     "edit": {"parent": parent.key, **edit}})
        record = dataclasses.replace(parent.record, key=key, created_at=time.time(), n_clusters=metrics["n_clusters"],
                                     info=info)
        assignments = Assignments(ids, labels, probabilities, parent.assignments.x, parent.assignments.y,
                                  np.asarray(how, dtype=object))
        arrays, _, params = ws.read_predictor(parent.key)
        arrays = dict(arrays)
        rows = _rows_of(np.asarray(arrays["image_ids"], dtype=np.int64), ids)
        present = rows >= 0
        arrays["clusters"] = np.asarray(arrays["clusters"], dtype=np.int64).copy()
        arrays["membership_probability"] = np.asarray(arrays["membership_probability"], dtype=np.float32).copy()
        if "member_stats" in arrays:  # members that changed cluster are measured again, in their new one
            arrays["member_stats"] = np.asarray(arrays["member_stats"], dtype=np.float32).copy()
            moved = rows[present][arrays["clusters"][rows[present]] != labels[present]]
            arrays["member_stats"][moved] = np.nan
            for stale in ("direction_ids", "directions"):  # each cluster's direction is found again
                arrays.pop(stale, None)
        arrays["clusters"][rows[present]] = labels[present]
        arrays["membership_probability"][rows[present]] = probabilities[present]
        ws.write_predictor(key, arrays, None, params, index_from=parent.key)
        names = [n for n in ws.names(parent.key) if n.cluster not in dropped and n.error is None]
        outputs = job._write_outputs(ws, record, parent.images, assignments, parent.skipped, choose_names(names))
        info["timings"] = {"edit": time.perf_counter() - started}
        ws.save_run(record, assignments, names)
        log.info("run %s: %s of run %s", key, edit["action"], parent.key)
        return Run(record, ws.path, parent.images, assignments, parent.skipped, outputs, choose_names(names))
    finally:
        ws.close()


def _rows_of(table_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row in ``table_ids`` of each of ``ids`` (-1 where absent)."""
    if not len(table_ids):
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(table_ids, kind="stable")
    found = order[np.clip(np.searchsorted(table_ids[order], ids), 0, len(order) - 1)]
    return np.where(table_ids[found] == ids, found, -1)
