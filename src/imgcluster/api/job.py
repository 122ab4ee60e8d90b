"""The whole job (`cluster`): every step, the run saved and its outputs written; reading runs back."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import NOISE, settle
from ..cluster.settings import clusterer_for
from ..cluster.predictor import Predictor
from ..config import ClusterConfig, RunConfig, configure
from ..embed import check_device, check_name
from ..errors import ConfigError, NoImages
from ..label import check_namer
from ..reduce import check_reduce_config, make_reducer
from ..run import FIT, Draft, Embedded, Naming, Provenance, Run, save_run
from ..run import derive
from ..run.metrics import external_metrics, new_run_key, used_cluster_settings
from ..run.outputs import write_report
from ..scan import ScanResult
from ..store import Assignments, ClusterName, ImageRecord, RunRecord, Workspace
from . import naming, search
from .runs import load_run
from .steps import (
    Clustering,
    Embeddings,
    Progress,
    Reduction,
    StageProgress,
    check_key_format,
    check_new_key,
    embed,
    fit_clusters,
    no_images_message,
    open_workspace,
    scan,
    skipped_now,
    stage_progress,
)

log = logging.getLogger(__name__)


# -- the whole job --------------------------------------------------------------------------------

def cluster(path: str | os.PathLike[str], *, model: str | None = None, method: str | None = None,
            k: int | None = None, preset: str | None = None, workspace: str | os.PathLike[str] | None = None,
            config: RunConfig | None = None, run_key: str | None = None,
            progress: StageProgress | None = None, namer: str | None = None, follow: str | None = None,
            overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Run:
    """Scan, embed, reduce and cluster the images under ``path``, pick each cluster's representatives,
    name the clusters, and write the run's outputs (clusters.csv, clusters.parquet, report.html) under
    ``WORKSPACE/runs/<key>/``.

    ``model``, ``method``, ``k`` and ``namer`` override the matching fields of ``config`` (after the preset),
    then ``overrides`` (stage -> field -> value, as ``config.configure`` takes them) override those.
    A setting given on purpose that the chosen method or reducers do not take is a ConfigError
    naming those it applies to (``--method dbscan --k 7``), before any work.
    ``follow`` names an earlier run of the workspace to keep ids with (a full re-fit of a living
    collection): each new cluster takes the id of the earlier cluster it overlaps most, one to one,
    and its manual name; clusters with no counterpart get ids above every earlier one.
    """
    shortcuts = {"embed": {"model": model}, "cluster": {"method": method, "k": k}, "name": {"namer": namer}}
    given = {stage: {name: value for name, value in values.items() if value is not None}
             for stage, values in shortcuts.items()}
    for stage, values in (overrides or {}).items():
        given.setdefault(stage, {}).update(values)
    config = configure(config, preset, given)
    check_reduce_config(config.reduce, config.preset)
    config = dataclasses.replace(config, cluster=settle(config.cluster, config.preset))
    timings: dict[str, float] = {}
    stage = stage_progress(progress)
    _check_before_work(config, run_key)
    if not Path(path).expanduser().exists():
        raise NoImages(f"{path} does not exist. Give a folder (or a file) that holds images.")
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        check_new_key(ws, run_key)
        followed = ws.run(follow) if follow is not None else None  # an unknown key fails before any work
        started = time.perf_counter()
        found = scan(path, workspace=ws, config=config.scan, progress=stage("scan"))
        timings["scan"] = time.perf_counter() - started
        if not found.images:
            raise NoImages(no_images_message(found))
        started = time.perf_counter()
        embedded = embed(found, workspace=ws, config=config.embed, progress=stage("embed"))
        timings["embed"] = time.perf_counter() - started
        if not embedded.images:
            raise NoImages(no_images_message(dataclasses.replace(found, images=[], skipped=skipped_now(ws, found))))
        if config.dedup is not None:
            reduction, clustering = search.fit_deduplicated(ws, embedded.images, embedded.vectors, config, timings,
                                                            progress)
        else:
            reduction, clustering = fit_clusters(embedded.vectors, config.reduce, config.cluster, timings=timings,
                                                 progress=progress)
        resolved = dataclasses.replace(
            config, embed=dataclasses.replace(  # auto resolved: the model and backend that made the vectors
                config.embed, model=embedded.model["name"], backend=embedded.model.get("backend", "torch"),
                precision=embedded.model.get("precision", "auto")),
            cluster=dataclasses.replace(config.cluster, **{
                key: value for key, value in clustering.params.items()
                if key in {f.name for f in dataclasses.fields(ClusterConfig)}}))
        return _save_fit(ws, found, embedded, reduction, clustering, resolved, config, timings,
                         run_key or new_run_key(), stage, followed)
    finally:
        ws.close()


def _check_before_work(config: RunConfig, run_key: str | None) -> None:
    """Refuse bad names and settings now, not after hours of embedding."""
    check_name(config.embed.model)
    check_device(config.embed.device)
    for name in (config.reduce.method, config.reduce.map_method):
        make_reducer(name)  # raises UnknownName with the choices
    clusterer_for(config.cluster)  # unknown method, or kmeans/spectral without k
    check_namer(config.name.namer)
    check_key_format(run_key)


def _save_fit(ws: Workspace, found: ScanResult, embedded: Embeddings, reduction: Reduction,
              clustering: Clustering, resolved: RunConfig, requested: RunConfig, timings: dict[str, float],
              key: str, stage: Callable[[str], Progress], followed: RunRecord | None) -> Run:
    """A fit as a draft (renumbered to ``followed``'s ids when given), saved by the one recipe."""
    image_ids = np.asarray([r.id for r in embedded.images], dtype=np.int64)
    labels, provenance, carried = clustering.labels, Provenance(FIT), []
    if followed is not None:
        labels, provenance, carried = derive.follow(ws, followed, image_ids, clustering.labels)
    config = resolved.to_dict()
    config["cluster"] = used_cluster_settings(config["cluster"], clustering.params)
    skipped = skipped_now(ws, found)
    base = RunRecord(key, 0.0, found.root, embedded.model["model_id"], embedded.model["name"], len(image_ids), 0,
                     config, requested_config=requested.to_dict(), model=embedded.model,
                     clustering=clustering.params, skipped=len(skipped), provenance=provenance,
                     embedding=Embedded(embedded.report.n_embedded, embedded.report.n_cached))
    assignments = Assignments(image_ids, labels, clustering.probabilities,
                              reduction.map[:, 0], reduction.map[:, 1], clustering.how)

    def write_predictor(ws: Workspace, key: str) -> None:
        predictor = Predictor(seed=resolved.reduce.seed, held_quantile=resolved.cluster.held_quantile).fit(
            embedded.vectors, labels, clustering.probabilities, reduction.map, image_ids)
        ws.write_predictor(key, *predictor.state())
        # Built and dropped here: its index is the job's largest object (1.5 GB at 1M images), and
        # naming needs none of it.

    def name(ws: Workspace, record: RunRecord, images: list[ImageRecord], assignments: Assignments,
             progress: Progress | None) -> tuple[list[ClusterName], Naming]:
        return naming.name_new_run(ws, record, embedded, assignments, resolved.name, progress=progress)

    draft = Draft(base, list(embedded.images), assignments, reduction.space, write_predictor, names=carried,
                  name=name, skipped=skipped, timings=timings)
    return save_run(ws, draft, naming_progress=stage("name"), report_progress=stage("report"))


# -- reading runs back ----------------------------------------------------------------------------

def report(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
           workspace: str | os.PathLike[str] | None = None) -> Path:
    """(Re)write a run's ``report.html`` (the newest run with clusters when ``key`` is None) and return its path."""
    run = load_run(key, path=path, workspace=workspace)
    ws = Workspace.open(run.workspace)
    try:
        return write_report(ws, run.record, run.images, run.assignments, run.skipped, run.names)
    finally:
        ws.close()


def _bare_names_hint(rows: list[tuple[str, tuple[str, ...]]], images: Sequence[ImageRecord], root: str) -> str:
    """"; 'x.png' is the file name of 'sub/x.png'": where the rows give bare file names that images of
    the run have under a sub-folder ('' where no row does)."""
    by_name = {Path(r.path).name: r.path for r in images}
    for written, _ in rows:
        if Path(written).name == written and written in by_name:
            return f"; '{written}' is the file name of '{os.path.relpath(by_name[written], root)}'"
    return ""


def evaluate(labels: str | os.PathLike[str], key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None, level: str | int | None = None) -> dict[str, Any]:
    """Score a run (the newest with clusters when ``key`` is None) against a CSV of ``path,label`` rows and store it.

    Paths may be absolute or relative to the clustered folder (or to the CSV's own folder); images
    without a label are left out and counted (``unlabelled_images``), as are rows that name no image
    of the run (``unmatched_label_rows``, the first in ``unmatched_label_example``). ``level``
    scores the run's tree cut at that level (see ``Run.cut``); the metrics then say which under
    "level" and "n_clusters".
    """
    import csv

    labels_path = Path(labels).expanduser().resolve()
    if not labels_path.is_file():  # before the run is loaded: a typo is the likelier mistake
        what = "does not exist" if not labels_path.exists() else "is not a file"
        raise ConfigError(f"The labels file {labels_path} {what}. Give a CSV with the columns path,label.")
    run = load_run(key, path=path, workspace=workspace)
    at_level = run.at_level(level)
    known: dict[str, str] = {}
    rows: list[tuple[str, tuple[str, ...]]] = []  # each row's path as written, and what it may name
    with open(labels_path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise ConfigError(f"{labels_path} needs a header row with the columns path,label; "
                              f"found {reader.fieldnames}.")
        for row in reader:
            named = tuple(str((base / row["path"]).resolve())
                          for base in (Path(run.record.root), labels_path.parent))
            for candidate in named:
                known.setdefault(candidate, row["label"])
            rows.append((row["path"], named))
    labelled = [i for i, r in enumerate(run.images) if r.path in known]
    if not labelled:
        hint = _bare_names_hint(rows, run.images, run.record.root)
        raise ConfigError(f"None of the paths in {labels_path} matches an image of run {run.key}. Paths must be "
                          f"absolute or relative to {run.record.root}{hint}.")
    clusters = np.asarray(at_level.assignments.clusters)
    metrics = external_metrics([known[run.images[i].path] for i in labelled], clusters[labelled])
    metrics["unlabelled_images"] = len(run.images) - len(labelled)
    # A row naming no image of the run (a typo, a file since moved) would otherwise only shrink the
    # scored set without a word: counted, with the first as an example.
    paths = {r.path for r in run.images}
    unmatched = [written for written, named in rows if not any(candidate in paths for candidate in named)]
    metrics["unmatched_label_rows"] = len(unmatched)
    metrics["unmatched_label_example"] = unmatched[0] if unmatched else None
    if at_level is not run:
        metrics["level"], metrics["n_clusters"] = str(level), len(set(clusters.tolist()) - {NOISE})
    ws = Workspace.open(run.workspace)
    try:
        ws.save_evaluation(run.key, str(labels_path), metrics)
    finally:
        ws.close()
    return metrics
