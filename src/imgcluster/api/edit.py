"""Hand edits of a run: merge clusters, split one, move images to another cluster. Each edit is saved as a new
run derived from the edited one (``record.provenance``: "edit", its parent and the edit): the original stays as it was, so the two
can be compared (``compare_runs``), and nothing is refitted.

Cluster ids keep their meaning in the derived run, so the parent's names carry over (a merged-away
cluster's names go with it). The predictor is the parent's, relabelled: new images are filed into
the edited clusters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cluster import NOISE
from ..errors import ConfigError
from ..run import Run, derive, save_run
from ..run.metrics import new_run_key
from ..store import Workspace
from .runs import load_run
from .steps import check_new_key

log = logging.getLogger(__name__)

MOVED = "moved"  # the ``how`` of an image a person put in its cluster
SPLIT = "split"  # the ``how`` of an image a split put in a new cluster


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
    parent = load_run(key, path=path, workspace=workspace)
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
    parent = load_run(key, path=path, workspace=workspace)
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


def split_cluster(cluster: int, k: int = 2, key: str | None = None, *, seed: int = 0,
                  path: str | os.PathLike[str] | None = None, workspace: str | os.PathLike[str] | None = None,
                  run_key: str | None = None) -> Run:
    """Re-cluster one cluster's images into ``k`` parts (k-means on their stored embeddings, seeded),
    saved as a new derived run. The biggest part keeps the cluster's id (and its names); the others get
    new ids after the run's largest, their images ``how`` = split. Membership probabilities stay the
    parent's: how surely an image belongs to the group the split divides."""
    from ..cluster import make_clusterer
    from ..embed import normalise

    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"A split needs k of at least 2 parts; got {k!r}.")
    parent = load_run(key, path=path, workspace=workspace)
    _check_known(parent, [int(cluster)], allow_noise=False)
    labels = np.asarray(parent.assignments.clusters, dtype=np.int64).copy()
    rows = np.flatnonzero(labels == cluster)
    if len(rows) < k:
        raise ConfigError(f"Cluster {cluster} of run {parent.key} has {len(rows)} images; it cannot be split into {k}. "
                          "Choose a smaller k.")
    ws = Workspace.open(parent.workspace, create=False)
    try:
        vectors = ws.load_embeddings(parent.record.model_id, [parent.images[r].content_hash for r in rows.tolist()])
    except KeyError:
        raise ConfigError(f"Some images of cluster {cluster} have no {parent.record.model_name} embedding any more "
                          "(they changed since the run); cluster the folder again to split it.") from None
    finally:
        ws.close()
    parts = make_clusterer("kmeans", k=k, seed=seed).fit(normalise(vectors)).labels_
    by_size = np.argsort(-np.bincount(parts, minlength=k), kind="stable")  # biggest part first
    new_ids = [int(cluster)] + list(range(int(labels.max()) + 1, int(labels.max()) + k))
    ids_of = np.empty(k, dtype=np.int64)
    ids_of[by_size] = new_ids
    labels[rows] = ids_of[parts]
    how = parent.assignments.how_per_image()
    for row in rows[labels[rows] != cluster].tolist():
        how[row] = SPLIT
    edit = {"action": "split", "cluster": int(cluster), "k": k, "into": new_ids}
    return _save_edit(parent, labels, np.asarray(parent.assignments.membership_probability, dtype=np.float64), how,
                      edit, dropped=set(), run_key=run_key)


def split_off(image_ids: Sequence[int], key: str | None = None, *, path: str | os.PathLike[str] | None = None,
              workspace: str | os.PathLike[str] | None = None, run_key: str | None = None) -> Run:
    """Put images of a run (a lasso or box on the map, picked images) in a new cluster of their own, the id
    after the run's largest, saved as a new derived run (``how`` = split; membership probability 1)."""
    parent = load_run(key, path=path, workspace=workspace)
    ids = np.asarray(parent.assignments.image_ids, dtype=np.int64)
    wanted = np.unique(np.asarray(list(image_ids), dtype=np.int64))
    if not len(wanted):
        raise ConfigError("Choose at least one image to split off.")
    rows = np.flatnonzero(np.isin(ids, wanted))
    if len(rows) != len(wanted):
        missing = np.setdiff1d(wanted, ids)[:10].tolist()
        raise ConfigError(f"Run {parent.key} has no image with id {', '.join(map(str, missing))}.")
    labels = np.asarray(parent.assignments.clusters, dtype=np.int64).copy()
    new = int(labels.max(initial=NOISE)) + 1
    probabilities = np.asarray(parent.assignments.membership_probability, dtype=np.float64).copy()
    how = parent.assignments.how_per_image()
    labels[rows] = new
    probabilities[rows] = 1.0
    for row in rows.tolist():
        how[row] = SPLIT
    edit = {"action": "split", "cluster": new, "image_ids": wanted.tolist(), "into": [new]}
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
        check_new_key(ws, run_key)
        draft = derive.edit(ws, parent, run_key or new_run_key(), labels, probabilities, how, edit, dropped=dropped)
        run = save_run(ws, draft)
        log.info("run %s: %s of run %s", run.key, edit["action"], parent.key)
        return run
    finally:
        ws.close()
