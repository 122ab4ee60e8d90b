"""The one recipe that turns a draft into a saved run, whatever made the draft (a fit, an update, a
proposal review, an edit, a follow): summaries → metrics → cluster tree → map colours →
representatives → record → predictor → names → outputs → ``Workspace.save_run``. Only this module
calls the store's ``save_run``."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..label import choose_names
from ..palette import map_colours
from ..represent import representatives
from ..store import Assignments, ClusterName, ImageRecord, Naming, Representatives, RunRecord, Workspace
from .metrics import answer_warnings, internal_metrics, package_versions, summarise_clusters
from .outputs import Progress, write_outputs
from .record import Run
from .tree import attach_proposals, run_tree

log = logging.getLogger(__name__)

# Writes the draft's predictor under the given run key.
PredictorStep = Callable[[Workspace, str], None]
# Names a run's clusters: (every name to store, how the namer fared, None: nothing to record).
NameStep = Callable[[Workspace, RunRecord, "list[ImageRecord]", Assignments, "Progress | None"],
                    "tuple[list[ClusterName], Naming | None]"]


@dataclass
class Draft:
    """A run before it is saved: its assignments, the space they are measured in, and what it keeps.

    ``base`` holds what the recipe does not measure: key, root, model, resolved config, provenance and
    whatever a derived run inherits (requested config, clusterer, naming, embedding counts); the
    recipe fills in the counts, metrics, warnings, cluster summaries, representatives, versions and
    timings. ``space`` (n, d) is where summaries, metrics and representatives are measured (a
    derived run's clustering space is not stored: its 2-D map, and then ``metrics["silhouette_on"]``
    says so). ``representatives`` None: chosen in ``space``. ``names`` are stored with the run;
    ``name`` (when given) adds a namer's. ``skipped`` are listed in the report."""

    base: RunRecord
    images: list[ImageRecord]
    assignments: Assignments
    space: np.ndarray
    write_predictor: PredictorStep
    names: list[ClusterName] = field(default_factory=list)
    name: NameStep | None = None
    skipped: Sequence[ImageRecord] = ()
    representatives: list[Representatives] | None = None
    on_map: bool = False
    metrics_sample: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


def save_run(ws: Workspace, draft: Draft, *, naming_progress: Progress | None = None,
             report_progress: Progress | None = None) -> Run:
    """Measure ``draft``, write its predictor, names and outputs, and make it a run of ``ws`` (the
    caller holds the workspace's lock). A killed earlier try at the same key leaves files, never a
    run: they are removed first."""
    key, assignments, timings = draft.base.key, draft.assignments, dict(draft.timings)
    ids = np.asarray(assignments.image_ids, dtype=np.int64)
    labels = np.asarray(assignments.clusters, dtype=np.int64)
    probabilities = np.asarray(assignments.membership_probability, dtype=np.float64)
    summaries = summarise_clusters(ids, labels, probabilities, draft.space)
    sample = {"sample": draft.metrics_sample} if draft.metrics_sample else {}
    metrics = internal_metrics(draft.space, labels, probabilities, **sample)
    if draft.on_map:
        metrics["silhouette_on"] = "map"
    chosen_images = (draft.representatives if draft.representatives is not None
                     else representatives(ids, labels, probabilities, draft.space))
    started = time.perf_counter()
    tree, leaves = run_tree(labels, draft.space, draft.base, on_map=draft.on_map, ids=ids)
    timings["tree"] = time.perf_counter() - started
    assignments = dataclasses.replace(assignments, leaves=leaves)  # stored with them (None: the clusters)
    started = time.perf_counter()
    # Kept with the run, so the web app's cluster list needs no per-image arrays (0.05-0.3 s at 1M
    # images, on the path of a fresh server's first frame) and the report reads the same colours.
    colours = map_colours(np.asarray(assignments.x), np.asarray(assignments.y), labels)
    timings["colours"] = time.perf_counter() - started
    warnings = answer_warnings(len(ids), metrics, draft.base.clustering, draft.base.config.get("preset"))
    for warning in warnings:
        log.info("run %s: %s", key, warning)
    record = dataclasses.replace(
        draft.base, created_at=time.time(), n_images=len(ids), n_clusters=metrics["n_clusters"], metrics=metrics,
        warnings=warnings, clusters=summaries, representatives=list(chosen_images), versions=package_versions(),
        timings=timings, tree=tree, proposed=attach_proposals(list(draft.base.proposed), tree), colours=colours)
    if ws.discard_unsaved_run(key):
        log.info("removed the unfinished files of an earlier, interrupted run %s", key)
    started = time.perf_counter()
    draft.write_predictor(ws, key)
    timings["predictor"] = time.perf_counter() - started
    names = list(draft.names)
    if draft.name is not None:
        started = time.perf_counter()
        named, naming = draft.name(ws, record, draft.images, assignments, naming_progress)
        timings["name"] = time.perf_counter() - started
        names = names + named
        if naming is not None:
            record = dataclasses.replace(record, naming=naming, timings=timings)
    # A cluster an edit emptied keeps no name: a later cluster given its id must not inherit it.
    present = set(labels[labels >= 0].tolist())
    names = [name for name in names if name.cluster in present]
    chosen = choose_names(names)
    started = time.perf_counter()
    outputs = write_outputs(ws, record, draft.images, assignments, draft.skipped, chosen, progress=report_progress)
    timings["report"] = time.perf_counter() - started
    record = dataclasses.replace(record, timings=timings)
    ws.save_run(record, assignments, names)
    log.info("run %s: %d images, %d clusters, model %s (%s)", key, record.n_images, record.n_clusters,
             record.model_name, record.provenance.how)
    return Run(record, ws.path, list(draft.images), assignments, list(draft.skipped), outputs, chosen)
