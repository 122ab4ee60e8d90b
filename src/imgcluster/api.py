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
import functools
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import export as export_stage
from . import report as report_stage
from .cluster import NOISE, AutoClusterer, Clusterer, make_clusterer
from .cluster.noise import attach_noise
from .cluster.predictor import Prediction, Predictor
from .config import (POOLINGS, ClusterConfig, EmbedConfig, NameConfig, ReduceConfig, RunConfig, ScanConfig,
                     apply_preset)
from .embed import EmbedReport, check_name, embed_records, load_model, normalise
from .embed.base import Embedder
from .errors import ConfigError, ImgclusterError, ModelUnavailable, NoImages, UnknownName
from .label import MANUAL, ClusterView, NamingContext, check_namer, choose_names, make_namer, resolve_namer
from .reduce import Reducer, effective_neighbors, make_reducer, nearest_neighbors
from .represent import Representatives, representatives
from .runs import (ABSENT, UNSTABLE_BELOW, ClusterMatch, ClusterParts, ClusterStability, ClusterSummary,
                   cluster_stability, compare_assignments, consensus, external_metrics, internal_metrics, new_run_key,
                   package_versions, summarise_clusters)
from .scan import ScanResult, load_rgb, sniff
from .scan import scan as scan_folder
from .store import Assignments, ClusterName, ImageRecord, RunRecord, Workspace, default_workspace

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
        return [ClusterSummary(**c) for c in self.record.info["clusters"]]

    def representatives(self) -> dict[int, Representatives]:
        """Each cluster's most central, most probable and diverse images (catalogue ids), by cluster."""
        return {r["cluster"]: Representatives(**r) for r in self.record.info.get("representatives", [])}


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
    embedder = load_model(config.model, device=config.device, pooling=config.pooling)
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
            progress: StageProgress | None = None, namer: str | None = None) -> Run:
    """Scan, embed, reduce and cluster the images under ``path``, pick each cluster's representatives,
    name the clusters, and write the run's outputs (clusters.csv, clusters.parquet, report.html) under
    ``WORKSPACE/runs/<key>/``.

    ``model``, ``method``, ``k`` and ``namer`` override the matching fields of ``config`` (after the preset).
    """
    config = apply_preset(config or RunConfig(), preset)
    if namer is not None:
        config = dataclasses.replace(config, name=dataclasses.replace(config.name, namer=namer))
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
    check_namer(config.name.namer)
    if run_key is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", run_key):
        raise ConfigError(f"Run key {run_key!r} may hold only letters, digits, '.', '_' and '-' (at most 64).")


def _save_run(ws: Workspace, found: ScanResult, embedded: Embeddings, reduction: Reduction,
              clustering: Clustering, resolved: RunConfig, requested: RunConfig, timings: dict[str, float],
              key: str, stage: Callable[[str], Progress]) -> Run:
    image_ids = np.asarray([r.id for r in embedded.images], dtype=np.int64)
    summaries = summarise_clusters(image_ids, clustering.labels, clustering.probabilities, reduction.space)
    chosen_images = representatives(image_ids, clustering.labels, clustering.probabilities, reduction.space)
    metrics = internal_metrics(reduction.space, clustering.labels, clustering.probabilities)
    skipped = _skipped_now(ws, found)
    record = RunRecord(
        key=key, created_at=time.time(), root=found.root, model_id=embedded.model["model_id"],
        model_name=embedded.model["name"], n_images=len(image_ids), n_clusters=metrics["n_clusters"],
        config=resolved.to_dict(),
        info={"requested_config": requested.to_dict(), "model": embedded.model, "metrics": metrics,
              "timings": timings, "versions": package_versions(), "clustering": clustering.params,
              "clusters": [dataclasses.asdict(s) for s in summaries],
              "representatives": [dataclasses.asdict(r) for r in chosen_images],
              "embedding": {"new": embedded.report.n_embedded, "cached": embedded.report.n_cached},
              "skipped": len(skipped)})
    assignments = Assignments(image_ids, clustering.labels, clustering.probabilities,
                              reduction.map[:, 0], reduction.map[:, 1], clustering.how)
    started = time.perf_counter()
    predictor = Predictor(seed=resolved.reduce.seed).fit(
        embedded.vectors, clustering.labels, clustering.probabilities, reduction.map, image_ids)
    ws.write_predictor(key, *predictor.state())
    timings["predictor"] = time.perf_counter() - started
    stage("name")(0, 1)
    names = _name_new_run(ws, record, embedded, assignments, resolved.name, timings)
    chosen = choose_names(names)
    stage("name")(1, 1)
    started = time.perf_counter()
    stage("report")(0, 1)
    outputs = _write_outputs(ws, record, embedded.images, assignments, skipped, chosen)
    stage("report")(1, 1)
    timings["report"] = time.perf_counter() - started
    ws.save_run(record, assignments, names)
    log.info("run %s: %d images, %d clusters, model %s", key, record.n_images, record.n_clusters,
             record.model_name)
    return Run(record, ws.path, list(embedded.images), assignments, skipped, outputs, chosen)


def _write_outputs(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                   skipped: Sequence[ImageRecord], names: Mapping[int, ClusterName]) -> dict[str, Path]:
    csv_path, parquet_path = ws.write_assignment_tables(record.key, _assignment_table(images, assignments, names))
    return {"csv": csv_path, "parquet": parquet_path,
            "report": _write_report(ws, record, images, assignments, skipped, names)}


def _assignment_table(images: Sequence[ImageRecord], assignments: Assignments,
                      names: Mapping[int, ClusterName]) -> dict[str, list[Any]]:
    clusters = np.asarray(assignments.clusters).tolist()
    return {"path": [r.path for r in images], "cluster": clusters,
            "name": [names[c].name if c in names else "" for c in clusters],
            "membership_probability": np.round(np.asarray(assignments.membership_probability), 4).tolist(),
            "x": np.round(np.asarray(assignments.x, dtype=float), 4).tolist(),
            "y": np.round(np.asarray(assignments.y, dtype=float), 4).tolist(),
            "how": assignments.how_per_image()}


def _write_report(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                  skipped: Sequence[ImageRecord], names: Mapping[int, ClusterName] | None = None) -> Path:
    wanted = report_stage.thumbnail_ids(record, assignments)
    by_id = {r.id: r for r in images}
    thumbs = ws.thumbnails(by_id[i].content_hash for i in wanted if by_id[i].content_hash)  # type: ignore[misc]
    measured = ws.stability(record.key)
    html = report_stage.render(record, images, assignments, thumbs, skipped, names,
                               stability=measured[-1] if measured else None)
    return ws.write_run_file(record.key, "report.html", html)


# -- names --------------------------------------------------------------------------------------

def _name_new_run(ws: Workspace, record: RunRecord, embedded: Embeddings, assignments: Assignments,
                  config: NameConfig, timings: dict[str, float]) -> list[ClusterName]:
    """Name a new run's clusters with its configured namer; when ``auto`` chose zero-shot and that
    fails, the ImageNet head stands in. A failure leaves the clusters numbered, is logged and
    recorded in the run (``info["naming"]``), and never costs the run."""
    started = time.perf_counter()
    namer = resolve_namer(config.namer, embedded.model)
    record.info["naming"] = {"namer": namer}
    names: list[ClusterName] = []
    for attempt in [namer] + (["imagenet"] if config.namer == "auto" and namer == "zero-shot" else []):
        try:
            names = _run_namer(ws, record, embedded.images, assignments, config, attempt, vectors=embedded.vectors)
            break
        except Exception as error:  # hours of embedding must not be lost to a namer
            log.warning("Naming the clusters with %s failed (%s).", attempt, error,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            record.info["naming"].setdefault("errors", {})[attempt] = str(error)
    if record.info["naming"].get("errors"):
        record.info["naming"]["named_by"] = names[0].source if names else None
        log.warning("%s", f"The clusters are named by {names[0].source}." if names else
                    "The clusters keep their numbers; try another namer with `imgcluster names --namer NAMER`.")
    timings["name"] = time.perf_counter() - started
    return names


def _run_namer(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
               config: NameConfig, namer_name: str, vectors: np.ndarray | None = None,
               clusters: Sequence[int] | None = None, api_key: str | None = None) -> list[ClusterName]:
    namer = make_namer(namer_name, config, _naming_context(ws, record, api_key))
    if not getattr(namer, "needs_embeddings", False):
        vectors = None
    elif vectors is None:
        vectors = ws.load_embeddings(record.model_id, [r.content_hash for r in images])  # type: ignore[misc]
    return namer.name(_cluster_views(ws, record, images, assignments, vectors, clusters))


def _reload_run_model(record: RunRecord, device: str = "auto") -> Embedder:
    """The model that embedded ``record``, with the run's pooling, refusing weights that changed since."""
    pooling = record.info.get("model", {}).get("pooling")
    if pooling not in POOLINGS:  # efficientnet describes its fixed pooling in words; older runs had none
        pooling = None
    loaded = load_model(record.model_name, device=device, pooling=pooling)
    if loaded.model_id != record.model_id:
        raise ModelUnavailable(f"Run {record.key} was made with {record.model_id}, but {record.model_name} now "
                               f"loads as {loaded.model_id}; its weights changed. Re-run `imgcluster cluster`.")
    return loaded


def _naming_context(ws: Workspace, record: RunRecord, api_key: str | None = None) -> NamingContext:
    model = record.info.get("model", {"name": record.model_name, "model_id": record.model_id})

    @functools.cache
    def embedder() -> Embedder:
        return _reload_run_model(record)

    @functools.cache
    def classifier() -> Embedder:
        return embedder() if model.get("family") == "efficientnet" else load_model("efficientnet-lite0")

    return NamingContext(model, embedder, classifier, ws, api_key)


def _cluster_views(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                   vectors: np.ndarray | None, clusters: Sequence[int] | None = None) -> list[ClusterView]:
    """What namers see of each clustered cluster: representatives first (central, probable and
    diverse in turn), then the run's other best members; and the mean embedding when ``vectors``."""
    chosen = {r["cluster"]: Representatives(**r) for r in record.info.get("representatives", [])}
    by_id = {r.id: r for r in images}
    labels = np.asarray(assignments.clusters)
    views = []
    for summary in record.info.get("clusters", []):
        cluster = summary["cluster"]
        if cluster == NOISE or (clusters is not None and cluster not in clusters):
            continue
        ids = [i for i, _ in chosen[cluster].ordered()] if cluster in chosen else []
        members = [by_id[i] for i in dict.fromkeys(ids + summary["representatives"]) if i in by_id]
        thumbs = ws.thumbnails(r.content_hash for r in members if r.content_hash)
        mean = None if vectors is None else normalise(vectors[labels == cluster].mean(axis=0, keepdims=True))[0]
        views.append(ClusterView(cluster, summary["size"], [r.path for r in members],
                                 [r.content_hash or "" for r in members],
                                 [thumbs.get(r.content_hash or "") for r in members], mean))
    return views


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
        return Run(record, ws.path, images, assignments, skipped, outputs, choose_names(ws.names(record.key)))
    finally:
        ws.close()


def report(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
           workspace: str | os.PathLike[str] | None = None) -> Path:
    """(Re)write a run's ``report.html`` (the newest run when ``key`` is None) and return its path."""
    run = load_run(key, path=path, workspace=workspace)
    ws = Workspace.open(run.workspace)
    try:
        return _write_report(ws, run.record, run.images, run.assignments, run.skipped, run.names)
    finally:
        ws.close()


# -- runs: list, show, delete, compare, stability -------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    """One line of :func:`list_runs`: what a run was and how it scored, without its per-image data.
    ``unstable_clusters`` come from the run's newest stability measurement (None: never measured)."""

    key: str
    created_at: float
    root: str
    model_name: str
    method: str
    seed: int | None
    n_images: int
    n_clusters: int
    noise_fraction: float
    silhouette: float | None
    unstable_clusters: list[int] | None


def list_runs(path: str | os.PathLike[str] | None = None, *,
              workspace: str | os.PathLike[str] | None = None) -> list[RunSummary]:
    """Every run stored in the workspace, newest first."""
    ws = open_workspace(path, workspace=workspace)
    try:
        return [_run_summary(record, ws.stability(record.key)) for record in ws.runs()]
    finally:
        ws.close()


def _run_summary(record: RunRecord, measured: Sequence[Mapping[str, Any]]) -> RunSummary:
    metrics = record.info.get("metrics", {})
    newest = measured[-1] if measured else None
    unstable = None if newest is None else [c["cluster"] for c in newest["clusters"] if c["unstable"]]
    return RunSummary(record.key, record.created_at, record.root, record.model_name,
                      str(record.config.get("cluster", {}).get("method", "")),
                      record.config.get("reduce", {}).get("seed"), record.n_images, record.n_clusters,
                      float(metrics.get("noise_fraction", 0.0)), metrics.get("silhouette"), unstable)


def run_info(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Everything stored about a run (the newest when ``key`` is None) as JSON-ready data: the resolved
    config (automatic choices included) and the config as requested, the model, package versions,
    timings per stage, metrics, clusters with their shown names, evaluations, stability measurements
    and the run's files. Per-image assignments are left out (see :func:`load_run`)."""
    ws = open_workspace(path, workspace=workspace)
    try:
        record = ws.run(key)
        names = choose_names(ws.names(record.key))
        evaluations, measured = ws.evaluations(record.key), ws.stability(record.key)
        folder = ws.run_dir(record.key)
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        return {"key": record.key, "created_at": record.created_at, "root": record.root, "workspace": str(ws.path),
                "model_id": record.model_id, "model_name": record.model_name, "n_images": record.n_images,
                "n_clusters": record.n_clusters, "config": record.config, **record.info,
                "names": {str(c): dataclasses.asdict(n) for c, n in sorted(names.items())},
                "evaluations": evaluations, "stability": measured, "files": [str(p) for p in files]}
    finally:
        ws.close()


def delete_run(key: str, *, path: str | os.PathLike[str] | None = None,
               workspace: str | os.PathLike[str] | None = None) -> RunRecord:
    """Delete a run for good: its catalogue rows (assignments, names, evaluations, stability) and its
    folder ``WORKSPACE/runs/<key>/``. Embeddings, thumbnails and other runs stay. Returns the deleted
    record; an unknown key raises RunNotFound listing the recent runs."""
    if not key:
        raise ConfigError("Name the run to delete; `imgcluster runs list` shows the keys.")
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        record = ws.delete_run(key)
        log.info("deleted run %s and %s", key, ws.run_dir(key))
        return record
    finally:
        ws.close()


@dataclass(frozen=True)
class MovedImage:
    """An image whose cluster in run B is not the cluster of B its cluster of A was matched with."""

    image_id: int
    path: str
    cluster_a: int
    cluster_b: int


@dataclass(frozen=True)
class RunComparison:
    """How two runs agree over the images both clustered (``n_common``; ``only_a``/``only_b`` are in
    one run only). Unclustered (-1) counts as one more cluster in ARI, NMI, variation of information
    (nats) and the contingency table (rows: ``clusters_a``, columns: ``clusters_b``). ``matching`` is
    the best one-to-one pairing by Jaccard; ``splits`` are clusters of A whose images went to several
    clusters of B, ``merges`` clusters of B that took in several clusters of A (each part at least
    20% of the cluster it comes from and 5 images); ``moved`` the images not in their matched cluster."""

    a: str
    b: str
    n_common: int
    only_a: int
    only_b: int
    ari: float
    nmi: float
    variation_of_information: float
    clusters_a: list[int]
    clusters_b: list[int]
    contingency: list[list[int]]
    matching: list[ClusterMatch]
    splits: list[ClusterParts]
    merges: list[ClusterParts]
    moved: list[MovedImage]

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready data."""
        return dataclasses.asdict(self)


def compare_runs(a: str, b: str, *, path: str | os.PathLike[str] | None = None,
                 workspace: str | os.PathLike[str] | None = None) -> RunComparison:
    """Compare run ``a`` with run ``b`` over the images both clustered: ARI, NMI, variation of
    information, contingency table, best one-to-one cluster matching, splits, merges and moved images."""
    run_a, run_b = (load_run(key, path=path, workspace=workspace) for key in (a, b))
    ids_a, ids_b = np.asarray(run_a.assignments.image_ids), np.asarray(run_b.assignments.image_ids)
    common, rows_a, rows_b = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    if not len(common):
        raise ConfigError(f"Runs {run_a.key} ({run_a.record.root}) and {run_b.key} ({run_b.record.root}) share no "
                          "image; compare two runs of the same folder.")
    labels_a = np.asarray(run_a.assignments.clusters)[rows_a]
    labels_b = np.asarray(run_b.assignments.clusters)[rows_b]
    result = compare_assignments(labels_a, labels_b)
    paths = {r.id: r.path for r in run_a.images}
    moved = [MovedImage(int(common[i]), paths[int(common[i])], int(labels_a[i]), int(labels_b[i]))
             for i in np.flatnonzero(result.moved)]
    return RunComparison(run_a.key, run_b.key, len(common), len(ids_a) - len(common), len(ids_b) - len(common),
                         result.ari, result.nmi, result.variation_of_information, result.clusters_a,
                         result.clusters_b, result.contingency.tolist(), result.matching, result.splits,
                         result.merges, moved)


@dataclass(frozen=True)
class Stability:
    """How stable a run's clusters are (see :func:`stability`): per cluster, the mean over refits of its
    best Jaccard with any cluster of the refit; clusters below ``threshold`` are ``unstable``.
    ``repeat_ari`` is each refit's ARI with the run over the images it saw. ``consensus`` (n,) is each
    image's majority cluster over the run and its refits, aligned with ``image_ids``, and ``agreement``
    (n,) the share of those clusterings that voted for it."""

    run: str
    repeats: int
    seeds: list[int]
    subsample: float | None
    threshold: float
    clusters: list[ClusterStability]
    repeat_ari: list[float]
    image_ids: np.ndarray
    consensus: np.ndarray
    agreement: np.ndarray
    changed: int
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def unstable(self) -> list[int]:
        """The clusters whose stability is below ``threshold``, least stable first."""
        return [c.cluster for c in sorted(self.clusters, key=lambda c: c.stability) if c.stability < self.threshold]

    def to_dict(self) -> dict[str, Any]:
        """The measurement as stored beside the run: everything but the per-image arrays."""
        return {"run": self.run, "repeats": self.repeats, "seeds": self.seeds, "subsample": self.subsample,
                "threshold": self.threshold, "repeat_ari": self.repeat_ari, "changed": self.changed,
                "mean_agreement": float(self.agreement.mean()) if len(self.agreement) else 1.0,
                "seconds": round(self.seconds, 3), "unstable_clusters": self.unstable,
                "clusters": [dict(dataclasses.asdict(c), unstable=c.stability < self.threshold)
                             for c in self.clusters],
                "outputs": {name: str(p) for name, p in self.outputs.items()}}


def stability(path: str | os.PathLike[str] | None = None, *, run: str | None = None, repeats: int = 5,
              subsample: float | None = None, workspace: str | os.PathLike[str] | None = None,
              progress: StageProgress | None = None) -> Stability:
    """Refit a run (the newest when ``run`` is None) ``repeats`` times with other seeds and measure how
    stable each of its clusters is; store the result beside the run, write the consensus assignment
    to ``runs/<key>/consensus.csv`` and rewrite the run's report with unstable clusters flagged.

    Each refit uses the run's resolved config and its stored embeddings (nothing is embedded again)
    with the seeds after the run's own (seed s: s+1 … s+repeats, so no refit copies the run), each on
    a random ``subsample`` share of the images when given. The consensus relabels every refit onto
    the run's clusters (Hungarian matching on the contingency table) and takes each image's majority
    vote, the run's own cluster winning ties: memory grows with images x repeats, never images²."""
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1; got {repeats}. 5-10 refits give a usable estimate.")
    if subsample is not None and not 0.0 < subsample <= 1.0:
        raise ConfigError(f"subsample is the share of images each refit sees, between 0 and 1 (e.g. 0.8); "
                          f"got {subsample}.")
    reference = load_run(run, path=path, workspace=workspace)
    config = RunConfig.from_dict(reference.record.config)
    ws = Workspace.open(reference.workspace)
    try:
        ws.lock()
        started = time.perf_counter()
        vectors = _run_vectors(ws, reference)
        labels = np.asarray(reference.assignments.clusters, dtype=np.int64)
        seeds = [config.reduce.seed + 1 + i for i in range(repeats)]
        refits = []
        for done, seed in enumerate(seeds):
            refits.append(_refit(vectors, config, seed, subsample))
            _stage_progress(progress)("refit")(done + 1, repeats)
        agreed = consensus(labels, refits)
        table = _consensus_csv(reference.images, labels, agreed.labels, agreed.agreement)
        outputs = {"consensus": ws.write_run_file(reference.key, "consensus.csv", table),
                   "report": ws.run_dir(reference.key) / "report.html"}
        measured = Stability(
            reference.key, repeats, seeds, subsample, UNSTABLE_BELOW, cluster_stability(labels, refits),
            [_seen_ari(labels, refit) for refit in refits], np.asarray(reference.assignments.image_ids),
            agreed.labels, agreed.agreement, int((agreed.labels != labels).sum()), time.perf_counter() - started,
            outputs)
        ws.save_stability(reference.key, measured.to_dict())
        _write_report(ws, reference.record, reference.images, reference.assignments, reference.skipped,
                      reference.names)
        log.info("run %s: stability over %d refits in %.1f s; unstable clusters: %s", reference.key, repeats,
                 measured.seconds, measured.unstable or "none")
        return measured
    finally:
        ws.close()


def _run_vectors(ws: Workspace, run: Run) -> np.ndarray:
    """The stored embeddings of a run's images, in its order."""
    try:
        return ws.load_embeddings(run.record.model_id, [r.content_hash for r in run.images])  # type: ignore[misc]
    except KeyError:
        raise ImgclusterError(
            f"Some images of run {run.key} have no {run.record.model_name} embedding in {ws.path} any more (they "
            "changed since the run). Run `imgcluster cluster` again and measure the new run.") from None


def _refit(vectors: np.ndarray, config: RunConfig, seed: int, subsample: float | None) -> np.ndarray:
    """Labels (n,) of one refit with ``seed``; ``ABSENT`` for images left out of its subsample."""
    n = len(vectors)
    rows = np.arange(n)
    if subsample is not None and subsample < 1.0:
        size = min(n, max(2, round(subsample * n)))
        rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    # The refit's 2-D map is thrown away: PCA makes it nearly free where UMAP would cost a second fit.
    reduce_config = dataclasses.replace(config.reduce, seed=seed, map_method="pca")
    _, clustering = fit_clusters(vectors[rows], reduce_config, dataclasses.replace(config.cluster, seed=seed))
    labels = np.full(n, ABSENT, dtype=np.int64)
    labels[rows] = clustering.labels
    return labels


def _seen_ari(reference: np.ndarray, refit: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    seen = refit != ABSENT
    return round(float(adjusted_rand_score(reference[seen], refit[seen])), 4)


def _consensus_csv(images: Sequence[ImageRecord], clusters: np.ndarray, agreed: np.ndarray,
                   agreement: np.ndarray) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "cluster", "consensus", "agreement"])
    writer.writerows(zip([r.path for r in images], clusters.tolist(), agreed.tolist(),
                         np.round(agreement, 3).tolist()))
    return buffer.getvalue()


def name_clusters(key: str | None = None, *, namer: str | None = None, config: NameConfig | None = None,
                  clusters: Sequence[int] | None = None, path: str | os.PathLike[str] | None = None,
                  workspace: str | os.PathLike[str] | None = None, api_key: str | None = None) -> list[ClusterName]:
    """Name a stored run's clusters (the newest run when ``key`` is None) with a namer, keep the names
    beside the earlier ones (a manual name still wins), and rewrite the run's report and tables.

    ``namer`` overrides ``config.namer``; ``clusters`` limits the naming to those cluster ids;
    ``api_key`` is the VLM's key when IMGCLUSTER_VLM_KEY should not be used. Returns this namer's
    names, one per cluster, with ``error`` set where it failed.
    """
    config = config or NameConfig()
    config = dataclasses.replace(config, namer=namer) if namer is not None else config
    check_namer(config.namer)
    run = load_run(key, path=path, workspace=workspace)
    if clusters is not None:
        _check_clusters(run, clusters)
    ws = Workspace.open(run.workspace)
    try:
        ws.lock()
        resolved = resolve_namer(config.namer, run.record.info.get("model", {}))
        names = _run_namer(ws, run.record, run.images, run.assignments, config, resolved, clusters=clusters,
                           api_key=api_key)
        ws.save_names(run.key, names)
        _write_outputs(ws, run.record, run.images, run.assignments, run.skipped, choose_names(ws.names(run.key)))
        return names
    finally:
        ws.close()


def name_cluster(cluster: int, name: str, key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 workspace: str | os.PathLike[str] | None = None) -> ClusterName | None:
    """Give one cluster of a run (the newest when ``key`` is None) a name of your own; it wins over
    every automatic name and survives report regeneration. An empty ``name`` removes it again.
    Returns the name the cluster shows now (None: it is numbered)."""
    run = load_run(key, path=path, workspace=workspace)
    _check_clusters(run, [cluster])
    name = " ".join(name.split())
    ws = Workspace.open(run.workspace)
    try:
        ws.lock()
        if name:
            ws.save_names(run.key, [ClusterName(cluster, name, MANUAL, 1.0, [(name, 1.0)])])
        else:
            ws.delete_name(run.key, cluster, MANUAL)
        chosen = choose_names(ws.names(run.key))
        _write_outputs(ws, run.record, run.images, run.assignments, run.skipped, chosen)
        return chosen.get(cluster)
    finally:
        ws.close()


def cluster_names(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                  workspace: str | os.PathLike[str] | None = None) -> list[ClusterName]:
    """Every stored name of a run's clusters, from every source (``Run.names`` holds the shown ones)."""
    ws = open_workspace(path, workspace=workspace)
    try:
        return ws.names(ws.run(key).key)
    finally:
        ws.close()


def _check_clusters(run: Run, clusters: Sequence[int]) -> None:
    known = sorted(c.cluster for c in run.clusters() if c.cluster != NOISE)
    unknown = [c for c in clusters if c not in known]
    if unknown:
        shown = ", ".join(map(str, known[:30])) + (" …" if len(known) > 30 else "")
        raise ConfigError(f"Run {run.key} has no cluster {', '.join(map(str, unknown))}; its clusters are: "
                          f"{shown or 'none'}. Unclustered images (-1) cannot be named.")


def export(dest: str | os.PathLike[str], key: str | None = None, *, to: str = "folders", mode: str = "link",
           path: str | os.PathLike[str] | None = None,
           workspace: str | os.PathLike[str] | None = None) -> export_stage.ExportResult:
    """Export a run (the newest when ``key`` is None) to ``dest``, a new or empty folder (a new file
    for csv and parquet). ``to``: folders (one folder per cluster, '03-cats', links by default or
    copies with ``mode="copy"``, unclustered images in 'unclustered/'), fiftyone (data.json and
    labels.json of a FiftyOneImageClassificationDataset pointing at the images), csv or parquet
    (the per-image table with cluster names). The user's images are never moved or deleted."""
    if to not in export_stage.FORMATS:
        raise UnknownName(f"No export format called {to!r}. Choose one of: {', '.join(export_stage.FORMATS)}.")
    run = load_run(key, path=path, workspace=workspace)
    names = {cluster: chosen.name for cluster, chosen in run.names.items()}
    rows = [export_stage.ExportRow(r.id, r.path, int(c), float(p)) for r, c, p in zip(
        run.images, np.asarray(run.assignments.clusters).tolist(), run.assignments.membership_probability)]
    writers: dict[str, Callable[[], export_stage.ExportResult]] = {
        "folders": lambda: export_stage.export_folders(rows, names, dest, mode),
        "fiftyone": lambda: export_stage.export_fiftyone(rows, names, dest),
        "csv": lambda: export_stage.export_table(_assignment_table(run.images, run.assignments, run.names), dest, "csv"),
        "parquet": lambda: export_stage.export_table(
            _assignment_table(run.images, run.assignments, run.names), dest, "parquet"),
    }
    return writers[to]()


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
            self._embedder = _reload_run_model(self.record, self.device)
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

