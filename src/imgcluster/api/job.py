"""The whole job (`cluster`): every step, the run saved and its outputs written; reading runs back."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import report as report_stage
from ..cluster import NOISE, settle
from ..cluster.predictor import Predictor
from ..config import ClusterConfig, RunConfig, configure
from ..embed import check_device, check_name
from ..errors import ConfigError, NoImages
from ..label import MANUAL, check_namer, choose_names
from ..reduce import check_reduce_config, make_reducer
from ..represent import representatives
from ..runs import (answer_warnings, contingency, external_metrics, internal_metrics, match_clusters, new_run_key,
                    package_versions, summarise_clusters, used_cluster_settings)
from ..scan import ScanResult
from ..store import Assignments, ClusterName, ImageRecord, RunRecord, Workspace
from . import naming, search
from .steps import (
    Clustering,
    Embeddings,
    Progress,
    Reduction,
    Run,
    StageProgress,
    _make_clusterer,
    _no_images_message,
    _skipped_now,
    _stage_progress,
    embed,
    fit_clusters,
    open_workspace,
    scan,
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
    stage = _stage_progress(progress)
    _check_before_work(config, run_key)
    if not Path(path).expanduser().exists():
        raise NoImages(f"{path} does not exist. Give a folder (or a file) that holds images.")
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        _check_new_key(ws, run_key)
        followed = ws.run(follow) if follow is not None else None  # an unknown key fails before any work
        started = time.perf_counter()
        found = scan(path, workspace=ws, config=config.scan, progress=stage("scan"))
        timings["scan"] = time.perf_counter() - started
        if not found.images:
            raise NoImages(_no_images_message(found))
        started = time.perf_counter()
        embedded = embed(found, workspace=ws, config=config.embed, progress=stage("embed"))
        timings["embed"] = time.perf_counter() - started
        if not embedded.images:
            raise NoImages(_no_images_message(dataclasses.replace(found, images=[], skipped=_skipped_now(ws, found))))
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
        carried: list[ClusterName] = []
        if followed is not None:
            clustering, carried = _follow(ws, followed, embedded.images, clustering)
        run = _save_run(ws, found, embedded, reduction, clustering, resolved, config, timings,
                        run_key or new_run_key(), stage, carried)
        return run
    finally:
        ws.close()


def _follow(ws: Workspace, earlier: RunRecord, images: Sequence[ImageRecord],
            clustering: Clustering) -> tuple[Clustering, list[ClusterName]]:
    """``clustering`` renumbered to the ids of ``earlier``'s clusters (Hungarian matching on Jaccard
    over the images both runs hold, as ``compare_runs`` matches them), the matching recorded in
    ``clustering.params["follows"]``, and ``earlier``'s manual names of the matched clusters."""
    old = ws.assignments(earlier.key)
    ids = np.asarray([r.id for r in images], dtype=np.int64)
    found = np.clip(np.searchsorted(old.image_ids, ids), 0, max(len(old.image_ids) - 1, 0))
    shared = (old.image_ids[found] == ids) if len(old.image_ids) else np.zeros(len(ids), dtype=bool)
    labels = np.asarray(clustering.labels, dtype=np.int64)
    new_clusters, old_clusters, table = contingency(labels[shared], np.asarray(old.clusters)[found[shared]])
    matches = match_clusters(new_clusters, old_clusters, table)
    rename = {NOISE: NOISE} | {m.a: m.b for m in matches}
    next_id = int(np.max(old.clusters, initial=NOISE)) + 1  # an id never means two things
    unmatched = [int(c) for c in np.unique(labels) if int(c) not in rename]
    rename.update({c: next_id + i for i, c in enumerate(unmatched)})
    present, inverse = np.unique(labels, return_inverse=True)
    relabelled = np.asarray([rename[int(c)] for c in present], dtype=np.int64)[inverse.reshape(-1)]
    kept = {m.b for m in matches}
    follows = {"run": earlier.key, "shared_images": int(shared.sum()),
               "matched": [{"cluster": m.b, "jaccard": round(m.jaccard, 3), "shared": m.overlap} for m in matches],
               "new_clusters": sorted(rename[c] for c in unmatched),
               "ended": sorted(int(c) for c in old_clusters if c != NOISE and int(c) not in kept)}
    log.info("following run %s: %d clusters keep its ids, %d are new, %d of its clusters have no counterpart",
             earlier.key, len(matches), len(unmatched), len(follows["ended"]))
    carried = [dataclasses.replace(n, created_at=time.time()) for n in ws.names(earlier.key)
               if n.source == MANUAL and n.cluster in kept]
    return dataclasses.replace(clustering, labels=relabelled,
                               params={**clustering.params, "follows": follows}), carried


def _check_before_work(config: RunConfig, run_key: str | None) -> None:
    """Refuse bad names and settings now, not after hours of embedding."""
    check_name(config.embed.model)
    check_device(config.embed.device)
    for name in (config.reduce.method, config.reduce.map_method):
        make_reducer(name)  # raises UnknownName with the choices
    _make_clusterer(config.cluster)  # unknown method, or kmeans/spectral without k
    check_namer(config.name.namer)
    _check_key_format(run_key)


def _check_key_format(run_key: str | None) -> None:
    if run_key is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", run_key):
        raise ConfigError(f"Run key {run_key!r} may hold only letters, digits, '.', '_' and '-' (at most 64).")


def _check_new_key(ws: Workspace, run_key: str | None) -> None:
    """Refuse a malformed key, or one a run of ``ws`` already has: runs are never overwritten."""
    _check_key_format(run_key)
    if run_key is not None and run_key in {r.key for r in ws.runs()}:
        raise ConfigError(f"A run called {run_key!r} already exists in {ws.path}; runs are never overwritten. "
                          "Pick another --run-key.")


def _save_run(ws: Workspace, found: ScanResult, embedded: Embeddings, reduction: Reduction,
              clustering: Clustering, resolved: RunConfig, requested: RunConfig, timings: dict[str, float],
              key: str, stage: Callable[[str], Progress], carried: Sequence[ClusterName] = ()) -> Run:
    image_ids = np.asarray([r.id for r in embedded.images], dtype=np.int64)
    summaries = summarise_clusters(image_ids, clustering.labels, clustering.probabilities, reduction.space)
    chosen_images = representatives(image_ids, clustering.labels, clustering.probabilities, reduction.space)
    metrics = internal_metrics(reduction.space, clustering.labels, clustering.probabilities)
    skipped = _skipped_now(ws, found)
    config = resolved.to_dict()
    config["cluster"] = used_cluster_settings(config["cluster"], clustering.params)
    warnings = answer_warnings(len(image_ids), metrics, clustering.params, resolved.preset)
    for warning in warnings:
        log.info("run %s: %s", key, warning)
    record = RunRecord(
        key=key, created_at=time.time(), root=found.root, model_id=embedded.model["model_id"],
        model_name=embedded.model["name"], n_images=len(image_ids), n_clusters=metrics["n_clusters"],
        config=config,
        info={"requested_config": requested.to_dict(), "model": embedded.model, "metrics": metrics,
              "warnings": warnings,
              "timings": timings, "versions": package_versions(), "clustering": clustering.params,
              "clusters": [dataclasses.asdict(s) for s in summaries],
              "representatives": [dataclasses.asdict(r) for r in chosen_images],
              "embedding": {"new": embedded.report.n_embedded, "cached": embedded.report.n_cached},
              "skipped": len(skipped)})
    assignments = Assignments(image_ids, clustering.labels, clustering.probabilities,
                              reduction.map[:, 0], reduction.map[:, 1], clustering.how)
    if ws.discard_unsaved_run(key):  # a killed earlier try at this key left files, never a run
        log.info("removed the unfinished files of an earlier, interrupted run %s", key)
    started = time.perf_counter()
    predictor = Predictor(seed=resolved.reduce.seed, held_quantile=resolved.cluster.held_quantile).fit(
        embedded.vectors, clustering.labels, clustering.probabilities, reduction.map, image_ids)
    ws.write_predictor(key, *predictor.state())
    del predictor  # its index is the job's largest object (1.5 GB at 1M images); naming needs none of it
    timings["predictor"] = time.perf_counter() - started
    names = naming._name_new_run(ws, record, embedded, assignments, resolved.name, timings,
                                 progress=stage("name")) + list(carried)
    chosen = choose_names(names)
    started = time.perf_counter()
    outputs = _write_outputs(ws, record, embedded.images, assignments, skipped, chosen, progress=stage("report"))
    timings["report"] = time.perf_counter() - started
    ws.save_run(record, assignments, names)
    log.info("run %s: %d images, %d clusters, model %s", key, record.n_images, record.n_clusters,
             record.model_name)
    return Run(record, ws.path, list(embedded.images), assignments, skipped, outputs, chosen)


def _write_outputs(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                   skipped: Sequence[ImageRecord], names: Mapping[int, ClusterName],
                   progress: Progress | None = None) -> dict[str, Path]:
    """Write the run's tables and report; ``progress(done, 3)``: tables, thumbnails read, report."""
    progress = progress or (lambda done, total: None)
    progress(0, 3)
    csv_path, parquet_path = ws.write_assignment_tables(record.key, _assignment_table(images, assignments, names))
    progress(1, 3)
    report = _write_report(ws, record, images, assignments, skipped, names, on_thumbnails=lambda: progress(2, 3))
    progress(3, 3)
    return {"csv": csv_path, "parquet": parquet_path, "report": report}


def _assignment_table(images: Sequence[ImageRecord], assignments: Assignments,
                      names: Mapping[int, ClusterName]) -> dict[str, list[Any]]:
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


def _write_report(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                  skipped: Sequence[ImageRecord], names: Mapping[int, ClusterName] | None = None,
                  on_thumbnails: Callable[[], None] | None = None) -> Path:
    wanted = report_stage.thumbnail_ids(record, assignments)
    by_id = {r.id: r for r in images}
    thumbs = ws.thumbnails(by_id[i].content_hash for i in wanted if by_id[i].content_hash)  # type: ignore[misc]
    if on_thumbnails is not None:
        on_thumbnails()
    measured = ws.stability(record.key)
    html = report_stage.render(record, images, assignments, thumbs, skipped, names,
                               stability=measured[-1] if measured else None)
    return ws.write_run_file(record.key, "report.html", html)


# -- reading runs back ----------------------------------------------------------------------------

def load_run(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None) -> Run:
    """A stored run (when ``key`` is None, the newest run with clusters, else the newest) with its
    images and assignments."""
    ws = open_workspace(path, workspace=workspace, create=False)
    try:
        return _stored_run(ws, ws.run(key))
    finally:
        ws.close()


def _stored_run(ws: Workspace, record: RunRecord) -> Run:
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


def report(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
           workspace: str | os.PathLike[str] | None = None) -> Path:
    """(Re)write a run's ``report.html`` (the newest run with clusters when ``key`` is None) and return its path."""
    run = load_run(key, path=path, workspace=workspace)
    ws = Workspace.open(run.workspace)
    try:
        return _write_report(ws, run.record, run.images, run.assignments, run.skipped, run.names)
    finally:
        ws.close()


def evaluate(labels: str | os.PathLike[str], key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Score a run (the newest with clusters when ``key`` is None) against a CSV of ``path,label`` rows and store it.

    Paths may be absolute or relative to the clustered folder (or to the CSV's own folder); images
    without a label are left out and counted.
    """
    import csv

    labels_path = Path(labels).expanduser().resolve()
    if not labels_path.is_file():  # before the run is loaded: a typo is the likelier mistake
        what = "does not exist" if not labels_path.exists() else "is not a file"
        raise ConfigError(f"The labels file {labels_path} {what}. Give a CSV with the columns path,label.")
    run = load_run(key, path=path, workspace=workspace)
    known: dict[str, str] = {}
    with open(labels_path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise ConfigError(f"{labels_path} needs a header row with the columns path,label; "
                              f"found {reader.fieldnames}.")
        for row in reader:
            for base in (Path(run.record.root), labels_path.parent):
                known.setdefault(str((base / row["path"]).resolve()), row["label"])
    labelled = [i for i, r in enumerate(run.images) if r.path in known]
    if not labelled:
        raise ConfigError(f"None of the paths in {labels_path} matches an image of run {run.key}. Paths must be "
                          f"absolute or relative to {run.record.root}.")
    metrics = external_metrics([known[run.images[i].path] for i in labelled], run.assignments.clusters[labelled])
    metrics["unlabelled_images"] = len(run.images) - len(labelled)
    ws = Workspace.open(run.workspace)
    try:
        ws.save_evaluation(run.key, str(labels_path), metrics)
    finally:
        ws.close()
    return metrics
