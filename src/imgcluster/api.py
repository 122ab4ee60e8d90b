"""The scriptable surface: one function per CLI command, and the pipeline's steps one by one.

    ws = open_workspace("photos/")                 # photos/.imgcluster
    found = scan("photos/", workspace=ws)          # catalogue + skips
    emb = embed(found.images, workspace=ws)        # cached, resumable
    red = reduce(emb.vectors)                      # clustering space + 2-D map
    clu = cluster_points(red.space)                # labels + membership probabilities

or all of it, with outputs written: ``run = cluster("photos/")``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import report as report_stage
from .cluster import NOISE, AutoClusterer, Clusterer, make_clusterer
from .cluster.noise import attach_noise
from .cluster.predictor import Prediction, Predictor
from .config import ClusterConfig, EmbedConfig, ReduceConfig, RunConfig, ScanConfig, apply_preset
from .embed import EmbedReport, check_name, embed_records, load_model, normalise
from .embed.base import Embedder
from .errors import ConfigError, ModelUnavailable, NoImages
from .reduce import Reducer, effective_neighbors, make_reducer, nearest_neighbors
from .runs import ClusterSummary, external_metrics, internal_metrics, new_run_key, package_versions, summarise_clusters
from .scan import ScanResult, load_rgb, sniff
from .scan import scan as scan_folder
from .store import Assignments, ImageRecord, RunRecord, Workspace, default_workspace

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
StageProgress = Callable[[str, int, int], None]

# Below this many points UMAP computes exact neighbours itself, faster than a shared NN-descent graph.
_SHARED_KNN_FROM = 4096


# -- results --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Embeddings:
    """L2-normalised vectors (n, d) aligned with ``images``, and the model that made them."""

    images: list[ImageRecord]
    vectors: np.ndarray
    model: dict[str, Any]
    report: EmbedReport


@dataclass(frozen=True)
class Reduction:
    """The clustering space (n, n_components) and the 2-D map (n, 2), with their fitted reducers."""

    space: np.ndarray
    map: np.ndarray
    space_reducer: Reducer
    map_reducer: Reducer


@dataclass(frozen=True)
class Clustering:
    """Labels (n,), -1 for unclustered, membership probabilities (n,), and the fitted clusterer."""

    labels: np.ndarray
    probabilities: np.ndarray
    clusterer: Clusterer
    params: dict[str, Any]
    how: np.ndarray | None = None  # (n,) fit | filed | attached; None: all fit


@dataclass(frozen=True)
class Run:
    """A finished run, as stored: its record, images and assignments (aligned), skips and files."""

    record: RunRecord
    workspace: Path
    images: list[ImageRecord]
    assignments: Assignments
    skipped: list[ImageRecord] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.record.key

    def clusters(self) -> list[ClusterSummary]:
        """Cluster summaries (largest first, unclustered last)."""
        return [ClusterSummary(**c) for c in self.record.info["clusters"]]


# -- steps ----------------------------------------------------------------------------------------

def open_workspace(path: str | os.PathLike[str] | None = None, *,
                   workspace: str | os.PathLike[str] | None = None) -> Workspace:
    """Open the workspace given, or the default one of the image folder ``path`` (PATH/.imgcluster),
    or ``./.imgcluster`` when neither is given."""
    if workspace is not None:
        return Workspace.open(workspace)
    return Workspace.open(default_workspace(path if path is not None else "."))


def scan(path: str | os.PathLike[str], *, workspace: Workspace, config: ScanConfig = ScanConfig(),
         progress: Progress | None = None) -> ScanResult:
    """Catalogue the images under ``path``; see :func:`imgcluster.scan.scan`."""
    return scan_folder(path, workspace, config, progress)


def embed(images: Sequence[ImageRecord] | ScanResult, *, workspace: Workspace,
          config: EmbedConfig = EmbedConfig(), progress: Progress | None = None) -> Embeddings:
    """Embed images with ``config.model`` (cached by content), skipping those that fail to decode.

    Returns the images that have an embedding, aligned with their vectors.
    """
    records = list(images.images if isinstance(images, ScanResult) else images)
    embedder = _load_embedder(config)
    embed_report = embed_records(records, embedder, workspace, config, progress)
    usable = [r for r in records if r.content_hash not in embed_report.undecodable]
    vectors = workspace.load_embeddings(embedder.model_id, [r.content_hash for r in usable])  # type: ignore[misc]
    return Embeddings(usable, vectors.reshape(len(usable), embedder.dim), embedder.describe(), embed_report)


def _load_embedder(config: EmbedConfig) -> Embedder:
    embedder = load_model(config.model, device=config.device)
    log.info("model: %s (%s)", embedder.name, embedder.model_id)
    return embedder


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`embed_folder` did: the model, how many images were embedded now or found in the
    cache, the files skipped (with reasons) and the time the embedding took."""

    root: str
    workspace: Path
    model: dict[str, Any]
    n_images: int
    n_embedded: int
    n_cached: int
    skipped: list[ImageRecord]
    seconds: float


def embed_folder(path: str | os.PathLike[str], *, config: EmbedConfig = EmbedConfig(),
                 scan_config: ScanConfig = ScanConfig(), workspace: str | os.PathLike[str] | None = None,
                 progress: StageProgress | None = None) -> EmbedSummary:
    """Scan and embed the images under ``path`` without clustering (the ``imgcluster embed`` step).

    Embeddings are cached by content in the workspace, so a later ``cluster`` with the same model
    starts from them, and an interrupted call resumes where it stopped.
    """
    check_name(config.model)
    if not Path(path).expanduser().exists():
        raise NoImages(f"{path} does not exist. Give a folder (or a file) that holds images.")
    stage = _stage_progress(progress)
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        found = scan(path, workspace=ws, config=scan_config, progress=stage("scan"))
        if not found.images:
            raise NoImages(_no_images_message(found))
        embedder = _load_embedder(config)
        report = embed_records(found.images, embedder, ws, config, stage("embed"))
        return EmbedSummary(found.root, ws.path, embedder.describe(), report.n_requested, report.n_embedded,
                            report.n_cached, _skipped_now(ws, found), report.seconds)
    finally:
        ws.close()


def reduce(vectors: np.ndarray, config: ReduceConfig = ReduceConfig()) -> Reduction:
    """Fit the clustering-space reducer and the 2-D map reducer on ``vectors`` (n, d)."""
    n = len(vectors)
    knn = None
    if n >= _SHARED_KNN_FROM and "umap" in (config.method, config.map_method):
        knn = nearest_neighbors(vectors, effective_neighbors(config.n_neighbors, n), config.metric, config.seed)
    umap_params = {"n_neighbors": config.n_neighbors, "metric": config.metric, "n_epochs": config.n_epochs,
                   "seed": config.seed, "knn": knn}
    params = {"umap": umap_params, "pca": {"seed": config.seed}, "tsne": {"seed": config.seed, "metric": config.metric},
              "none": {}}
    space_reducer = make_reducer(config.method, n_components=config.n_components,
                                 **_for(config.method, params, min_dist=config.min_dist))
    space_reducer.fit(vectors)
    map_reducer = make_reducer(config.map_method, n_components=2, **_for(
        config.map_method, params, min_dist=config.map_min_dist, n_epochs=config.map_n_epochs))
    map_reducer.fit(vectors)
    return Reduction(np.asarray(space_reducer.embedding_, dtype=np.float32),
                     np.asarray(map_reducer.embedding_, dtype=np.float32)[:, :2], space_reducer, map_reducer)


def _for(method: str, params: dict[str, dict[str, Any]], **umap_extra: Any) -> dict[str, Any]:
    chosen = dict(params.get(method, {}))
    if method == "umap":
        chosen.update(umap_extra)
    return chosen


def cluster_points(space: np.ndarray, config: ClusterConfig = ClusterConfig(), *,
                   embeddings: np.ndarray | None = None) -> Clustering:
    """Cluster points of the clustering space; ``config.k`` selects k-means unless another
    k-taking method is named; a given ``min_cluster_size`` turns auto into plain hdbscan.

    ``embeddings`` (the vectors ``space`` was reduced from, same rows) let auto mode score its
    candidates in the embedding space, as ``cluster`` does; other methods ignore them."""
    clusterer = _make_clusterer(config)
    if isinstance(clusterer, AutoClusterer) and embeddings is not None:
        clusterer.fit(space, embeddings=embeddings)
    else:
        clusterer.fit(space)
    return Clustering(clusterer.labels_, clusterer.probabilities_, clusterer, clusterer.describe())


def _make_clusterer(config: ClusterConfig) -> Clusterer:
    method = config.method
    if config.k is not None and method in ("auto", "hdbscan"):
        method = "kmeans"
    elif method == "auto" and config.min_cluster_size is not None:
        method = "hdbscan"
    return make_clusterer(method, **{key: value for key, value in dataclasses.asdict(config).items()
                                     if key != "method"})


def fit_clusters(vectors: np.ndarray, reduce_config: ReduceConfig = ReduceConfig(),
                 cluster_config: ClusterConfig = ClusterConfig(), *, timings: dict[str, float] | None = None,
                 progress: StageProgress | None = None) -> tuple[Reduction, Clustering]:
    """Reduce and cluster L2-normalised ``vectors`` (n, d); results cover all n points.

    Above ``reduce_config.fit_sample`` points, UMAP and the clusterer are fitted on a seeded random
    sample and every other point is filed by the k-NN predictor (cluster, probability, and its
    clustering-space and map positions as similarity-weighted means of its neighbours'): the seed
    article's "fit on a sample, transform the rest", without UMAP's slow transform.
    With ``cluster_config.noise == "attach"``, unclustered points then join the cluster their nearest
    clustered points vote for, when that vote is at least ``attach_threshold`` sure. ``Clustering.how``
    says, per point, which of these placed it (fit, filed or attached).
    """
    timings = {} if timings is None else timings
    stage = _stage_progress(progress)
    n = len(vectors)
    sampled = 0 < reduce_config.fit_sample < n
    rows = (np.sort(np.random.default_rng(reduce_config.seed).choice(n, reduce_config.fit_sample, replace=False))
            if sampled else np.arange(n))
    started = time.perf_counter()
    stage("reduce")(0, 1)
    reduction = reduce(vectors[rows], reduce_config)
    stage("reduce")(1, 1)
    timings["reduce"] = time.perf_counter() - started
    started = time.perf_counter()
    stage("cluster")(0, 1)
    clustering = cluster_points(reduction.space, _sized_for_sample(cluster_config, len(rows), n),
                                embeddings=vectors[rows])
    stage("cluster")(1, 1)
    timings["cluster"] = time.perf_counter() - started
    if sampled:
        reduction, clustering = _file_rest(vectors, rows, reduction, clustering, reduce_config.seed, timings, stage)
    if cluster_config.noise == "attach":
        clustering = _attach_noise(vectors, clustering, cluster_config, timings)
    return reduction, clustering


def _sized_for_sample(config: ClusterConfig, sample: int, n: int) -> ClusterConfig:
    """Cluster sizes the user gave for the whole collection, scaled to a fit on ``sample`` of ``n``."""
    if sample >= n or (config.min_cluster_size is None and config.max_cluster_size is None):
        return config

    def scaled(size: int | None) -> int | None:
        return None if size is None else max(2, round(size * sample / n))

    return dataclasses.replace(config, min_cluster_size=scaled(config.min_cluster_size),
                               max_cluster_size=scaled(config.max_cluster_size))


def _file_rest(vectors: np.ndarray, rows: np.ndarray, reduction: Reduction, clustering: Clustering, seed: int,
               timings: dict[str, float], stage: Callable[[str], Progress]) -> tuple[Reduction, Clustering]:
    """Extend a fit on the sample ``rows`` to every vector through the k-NN predictor."""
    n = len(vectors)
    started = time.perf_counter()
    rest = np.setdiff1d(np.arange(n), rows)
    predictor = Predictor(seed=seed).fit(
        vectors[rows], clustering.labels, clustering.probabilities, reduction.map, rows)
    labels = np.empty(n, dtype=np.int64)
    probabilities = np.empty(n)
    space = np.empty((n, reduction.space.shape[1]), dtype=np.float32)
    map_xy = np.empty((n, 2), dtype=np.float32)
    labels[rows], probabilities[rows] = clustering.labels, clustering.probabilities
    space[rows], map_xy[rows] = reduction.space, reduction.map
    for start in range(0, len(rest), 10_000):
        chunk = rest[start:start + 10_000]
        filed = predictor.predict(vectors[chunk])
        labels[chunk], probabilities[chunk] = filed.clusters, filed.membership_probability
        space[chunk], map_xy[chunk] = filed.place(reduction.space), np.c_[filed.x, filed.y]
        stage("file")(start + len(chunk), len(rest))
    timings["file_rest"] = time.perf_counter() - started
    how = np.full(n, "filed", dtype=object)
    how[rows] = "fit"
    params = dict(clustering.params, fit_sample=len(rows), filed_by_predictor=len(rest))
    for key in ("min_cluster_size", "max_cluster_size"):  # as the whole collection sees them
        if params.get(key):
            params[f"{key}_in_sample"] = params[key]
            params[key] = round(params[key] * n / len(rows))
    return (Reduction(space, map_xy, reduction.space_reducer, reduction.map_reducer),
            Clustering(labels, probabilities, clustering.clusterer, params, how))


def _attach_noise(vectors: np.ndarray, clustering: Clustering, config: ClusterConfig,
                  timings: dict[str, float]) -> Clustering:
    started = time.perf_counter()
    result = attach_noise(vectors, clustering.labels, clustering.probabilities, config.attach_threshold, config.seed)
    how = (np.full(len(vectors), "fit", dtype=object) if clustering.how is None
           else np.asarray(clustering.how, dtype=object).copy())
    how[result.attached] = "attached"
    timings["attach_noise"] = time.perf_counter() - started
    params = dict(clustering.params, noise="attach", attach_threshold=config.attach_threshold,
                  attached=int(result.attached.sum()))
    return Clustering(result.labels, result.probabilities, clustering.clusterer, params, how)


# -- the whole job --------------------------------------------------------------------------------

def cluster(path: str | os.PathLike[str], *, model: str | None = None, method: str | None = None,
            k: int | None = None, preset: str | None = None, workspace: str | os.PathLike[str] | None = None,
            config: RunConfig | None = None, run_key: str | None = None,
            progress: StageProgress | None = None) -> Run:
    """Scan, embed, reduce and cluster the images under ``path``, and write the run's outputs
    (clusters.csv, clusters.parquet, report.html) under ``WORKSPACE/runs/<key>/``.

    ``model``, ``method`` and ``k`` override the matching fields of ``config`` (after the preset).
    """
    config = apply_preset(config or RunConfig(), preset)
    if model is not None:
        config = dataclasses.replace(config, embed=dataclasses.replace(config.embed, model=model))
    if method is not None or k is not None:
        config = dataclasses.replace(config, cluster=dataclasses.replace(
            config.cluster, method=method or config.cluster.method, k=k if k is not None else config.cluster.k))
    timings: dict[str, float] = {}
    stage = _stage_progress(progress)
    _check_before_work(config, run_key)
    if not Path(path).expanduser().exists():
        raise NoImages(f"{path} does not exist. Give a folder (or a file) that holds images.")
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        if run_key is not None and run_key in {r.key for r in ws.runs()}:
            raise ConfigError(f"A run called {run_key!r} already exists in {ws.path}; runs are never overwritten. "
                              "Pick another --run-key.")
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
        reduction, clustering = fit_clusters(embedded.vectors, config.reduce, config.cluster, timings=timings,
                                             progress=progress)
        resolved = dataclasses.replace(
            config, embed=dataclasses.replace(config.embed, model=embedded.model["name"]),
            cluster=dataclasses.replace(config.cluster, **{
                key: value for key, value in clustering.params.items()
                if key in {f.name for f in dataclasses.fields(ClusterConfig)}}))
        run = _save_run(ws, found, embedded, reduction, clustering, resolved, config, timings,
                        run_key or new_run_key(), stage)
        return run
    finally:
        ws.close()


def _check_before_work(config: RunConfig, run_key: str | None) -> None:
    """Refuse bad names and settings now, not after hours of embedding."""
    check_name(config.embed.model)
    for name in (config.reduce.method, config.reduce.map_method):
        make_reducer(name)  # raises UnknownName with the choices
    _make_clusterer(config.cluster)  # unknown method, or kmeans/spectral without k
    if run_key is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", run_key):
        raise ConfigError(f"Run key {run_key!r} may hold only letters, digits, '.', '_' and '-' (at most 64).")


def _save_run(ws: Workspace, found: ScanResult, embedded: Embeddings, reduction: Reduction,
              clustering: Clustering, resolved: RunConfig, requested: RunConfig, timings: dict[str, float],
              key: str, stage: Callable[[str], Progress]) -> Run:
    image_ids = np.asarray([r.id for r in embedded.images], dtype=np.int64)
    summaries = summarise_clusters(image_ids, clustering.labels, clustering.probabilities, reduction.space)
    metrics = internal_metrics(reduction.space, clustering.labels, clustering.probabilities)
    skipped = _skipped_now(ws, found)
    record = RunRecord(
        key=key, created_at=time.time(), root=found.root, model_id=embedded.model["model_id"],
        model_name=embedded.model["name"], n_images=len(image_ids), n_clusters=metrics["n_clusters"],
        config=resolved.to_dict(),
        info={"requested_config": requested.to_dict(), "model": embedded.model, "metrics": metrics,
              "timings": timings, "versions": package_versions(), "clustering": clustering.params,
              "clusters": [dataclasses.asdict(s) for s in summaries],
              "embedding": {"new": embedded.report.n_embedded, "cached": embedded.report.n_cached},
              "skipped": len(skipped)})
    assignments = Assignments(image_ids, clustering.labels, clustering.probabilities,
                              reduction.map[:, 0], reduction.map[:, 1], clustering.how)
    started = time.perf_counter()
    predictor = Predictor(seed=resolved.reduce.seed).fit(
        embedded.vectors, clustering.labels, clustering.probabilities, reduction.map, image_ids)
    ws.write_predictor(key, *predictor.state())
    timings["predictor"] = time.perf_counter() - started
    started = time.perf_counter()
    stage("report")(0, 1)
    outputs = _write_outputs(ws, record, embedded.images, assignments, skipped)
    stage("report")(1, 1)
    timings["report"] = time.perf_counter() - started
    ws.save_run(record, assignments)
    log.info("run %s: %d images, %d clusters, model %s", key, record.n_images, record.n_clusters,
             record.model_name)
    return Run(record, ws.path, list(embedded.images), assignments, skipped, outputs)


def _write_outputs(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                   skipped: Sequence[ImageRecord]) -> dict[str, Path]:
    table = {"path": [r.path for r in images], "cluster": np.asarray(assignments.clusters).tolist(),
             "membership_probability": np.round(np.asarray(assignments.membership_probability), 4).tolist(),
             "x": np.round(np.asarray(assignments.x, dtype=float), 4).tolist(),
             "y": np.round(np.asarray(assignments.y, dtype=float), 4).tolist(),
             "how": assignments.how_per_image()}
    csv_path, parquet_path = ws.write_assignment_tables(record.key, table)
    return {"csv": csv_path, "parquet": parquet_path,
            "report": _write_report(ws, record, images, assignments, skipped)}


def _write_report(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                  skipped: Sequence[ImageRecord]) -> Path:
    wanted = report_stage.thumbnail_ids(record, assignments)
    by_id = {r.id: r for r in images}
    thumbs = ws.thumbnails(by_id[i].content_hash for i in wanted if by_id[i].content_hash)  # type: ignore[misc]
    html = report_stage.render(record, images, assignments, thumbs, skipped)
    return ws.write_run_file(record.key, "report.html", html)


def _stage_progress(progress: StageProgress | None) -> Callable[[str], Progress]:
    def for_stage(name: str) -> Progress:
        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(name, done, total)
        return report
    return for_stage


def _skipped_now(ws: Workspace, found: ScanResult) -> list[ImageRecord]:
    """The scan's skips plus the files that failed to decode while embedding."""
    return [r for r in ws.images([r.path for r in found.images + found.skipped]) if r.status == "skipped"]


def _no_images_message(found: ScanResult) -> str:
    if not found.skipped:
        return (f"No images found under {found.root}. imgcluster reads JPEG, PNG, WebP, BMP, GIF and TIFF "
                "files in that folder and its sub-folders.")
    reasons = "; ".join(f"{Path(r.path).name}: {r.skip_reason}" for r in found.skipped[:5])
    return (f"None of the {len(found.skipped)} files under {found.root} could be used ({reasons}"
            f"{' …' if len(found.skipped) > 5 else ''}).")


# -- reading runs back ----------------------------------------------------------------------------

def load_run(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None) -> Run:
    """A stored run (the newest when ``key`` is None) with its images and assignments."""
    ws = open_workspace(path, workspace=workspace)
    try:
        record = ws.run(key)
        assignments = ws.assignments(record.key)
        by_id = {r.id: r for r in ws.images(ids=assignments.image_ids.tolist())}
        images = [by_id[i] for i in assignments.image_ids.tolist()]
        folder = ws.run_dir(record.key)
        outputs = {name: folder / file for name, file in
                   (("csv", "clusters.csv"), ("parquet", "clusters.parquet"), ("report", "report.html"))
                   if (folder / file).exists()}
        skipped = sorted((r for r in ws.known_files(record.root).values() if r.status == "skipped"),
                         key=lambda r: r.path)
        return Run(record, ws.path, images, assignments, skipped, outputs)
    finally:
        ws.close()


def report(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
           workspace: str | os.PathLike[str] | None = None) -> Path:
    """(Re)write a run's ``report.html`` (the newest run when ``key`` is None) and return its path."""
    run = load_run(key, path=path, workspace=workspace)
    ws = Workspace.open(run.workspace)
    try:
        return _write_report(ws, run.record, run.images, run.assignments, run.skipped)
    finally:
        ws.close()


def evaluate(labels: str | os.PathLike[str], key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Score a run (the newest when ``key`` is None) against a CSV of ``path,label`` rows and store it.

    Paths may be absolute or relative to the clustered folder (or to the CSV's own folder); images
    without a label are left out and counted.
    """
    import csv

    run = load_run(key, path=path, workspace=workspace)
    labels_path = Path(labels).expanduser().resolve()
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


# -- filing new images ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FiledImage:
    """Where a new image goes in a run: ``status`` is assigned, unassigned or skipped."""

    path: str
    status: str
    cluster: int
    membership_probability: float
    x: float
    y: float
    nearest_path: str | None
    nearest_similarity: float | None
    reason: str


class RunPredictor:
    """A run's persisted predictor, with the run's model loaded on first use: load once, predict many."""

    def __init__(self, record: RunRecord, predictor: Predictor, paths_by_id: dict[int, str], device: str = "auto"):
        self.record, self.predictor, self.paths_by_id, self.device = record, predictor, paths_by_id, device
        self._embedder: Any = None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            embedder = load_model(self.record.model_name, device=self.device)
            if embedder.model_id != self.record.model_id:
                raise ModelUnavailable(
                    f"Run {self.record.key} was made with {self.record.model_id}, but {self.record.model_name} "
                    f"now loads as {embedder.model_id}; its weights changed. Re-run `imgcluster cluster`.")
            self._embedder = embedder
        return self._embedder

    def predict_vectors(self, vectors: np.ndarray) -> Prediction:
        """File L2-normalised embeddings (m, d) of the run's model."""
        return self.predictor.predict(vectors)

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], batch_size: int | None = None
                      ) -> list[FiledImage]:
        """Decode, embed and file image files; unreadable ones come back as skipped, with the reason.
        ``batch_size`` unset uses the model's own choice for its device."""
        paths = [str(Path(p).expanduser().resolve()) for p in paths]
        embedder = self.embedder  # outside the per-file guard: a missing model is an error, not a skip
        batch_size = batch_size or embedder.batch_size
        results: dict[str, FiledImage] = {}
        for start in range(0, len(paths), batch_size):
            pixels, usable = [], []
            for path in paths[start:start + batch_size]:
                try:
                    pixels.append(embedder.preprocess(load_rgb(path, min_side=embedder.input_size)))
                    usable.append(path)
                except Exception as error:  # a damaged file is data, not a crash
                    results[path] = _skipped_file(path, _unusable_reason(path, error))
            if not usable:
                continue
            prediction = self.predict_vectors(normalise(embedder.embed(np.stack(pixels))))
            for i, path in enumerate(usable):
                cluster_id = int(prediction.clusters[i])
                results[path] = FiledImage(
                    path, "assigned" if cluster_id != NOISE else "unassigned", cluster_id,
                    float(prediction.membership_probability[i]), float(prediction.x[i]), float(prediction.y[i]),
                    self.paths_by_id.get(int(prediction.nearest_image_id[i])),
                    float(prediction.nearest_similarity[i]), prediction.reasons[i])
        return [results[p] for p in paths]


def _unusable_reason(path: str, error: Exception) -> str:
    """The scan's own words for a file it would skip, else the decoder's."""
    sniffed = sniff(path)
    return sniffed.skip_reason if sniffed.status != "ok" and sniffed.skip_reason else f"cannot decode: {error}"


def _skipped_file(path: str, reason: str) -> FiledImage:
    return FiledImage(path, "skipped", NOISE, 0.0, float("nan"), float("nan"), None, None, reason)


def load_predictor(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                   workspace: str | os.PathLike[str] | None = None, device: str = "auto") -> RunPredictor:
    """The persisted predictor of a run (the newest when ``key`` is None), ready to file new images."""
    ws = open_workspace(path, workspace=workspace)
    try:
        record = ws.run(key)
        predictor = Predictor.from_state(*ws.read_predictor(record.key))
        paths_by_id = {r.id: r.path for r in ws.images(ids=predictor.image_ids_.tolist())}
    finally:
        ws.close()
    return RunPredictor(record, predictor, paths_by_id, device)


def predict(paths: Sequence[str | os.PathLike[str]], *, run: str | None = None,
            path: str | os.PathLike[str] | None = None, workspace: str | os.PathLike[str] | None = None,
            device: str = "auto") -> list[FiledImage]:
    """File image files into a run's clusters (the newest run when ``run`` is None) without refitting."""
    return load_predictor(run, path=path, workspace=workspace, device=device).predict_files(paths)

