"""The pipeline's steps one by one: open a workspace, scan, embed, reduce, cluster points."""

from __future__ import annotations

import contextlib

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import Clusterer, fit_clusterer
from ..cluster.noise import attach_noise
from ..cluster.predictor import Predictor
from ..cluster.settings import fit_sample_for
from ..config import ClusterConfig, EmbedConfig, RayConfig, ReduceConfig, ScanConfig
from ..embed import EmbedReport, check_device, check_name, embed_records, load_model, recorded_settings
from ..embed.base import Embedder
from ..errors import ConfigError, ModelUnavailable, NoImages, UnknownName
from ..reduce import Reducer, effective_neighbors, fit_units, make_reducer, nearest_neighbors, reducer_settings
from ..run.record import Run  # noqa: F401 -- its old home (imgcluster.api.steps.Run)
from ..scan import ScanResult
from ..scan import scan as scan_folder
from ..store import ImageRecord, RunRecord, Workspace, locate_workspace
from ..store.shards import ShardedVectors
from ..store.vector_export import ShardExport

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
StageProgress = Callable[[str, int, int], None]

# From this many points both UMAP fits share one neighbour graph (reduce.nearest_neighbors: faiss,
# exact up to 8,000 points). Below 4,096 umap-learn's own exact search calls a Python-level cosine
# for every pair; reduce() with it against the shared graph, warm process, 2 busy cores
# (bench/first_run.py): 500 digits 8.3 s vs 0.8 s, 1,797 digits 15.1 s vs 2.7 s, 3,927 photo crops
# 52 s vs 5.3 s, the same neighbours; under ~300 points the two take the same time. Fewer than 3
# points never reach UMAP.
_SHARED_KNN_FROM = 3
# Rows filed per predictor call beyond a sampled fit: 10,000 x 512 float32 is 20 MB read at a time.
_FILE_BATCH = 10_000
# Up to this many images a run's embeddings are read into memory (200 MB at 512-d); beyond, every
# stage reads them from the shards as it goes, so a million images fit in a few GiB.
IN_MEMORY_UP_TO = 100_000


# -- results --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Embeddings:
    """L2-normalised vectors (n, d) aligned with ``images``, and the model that made them.

    Above ``IN_MEMORY_UP_TO`` images ``vectors`` is a ``ShardedVectors`` view on the workspace's
    shards (index it, or ``np.asarray`` it to read everything) rather than an array."""

    images: list[ImageRecord]
    vectors: np.ndarray | ShardedVectors
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


# -- steps ----------------------------------------------------------------------------------------

def open_workspace(path: str | os.PathLike[str] | None = None, *,
                   workspace: str | os.PathLike[str] | None = None, create: bool = True) -> Workspace:
    """Open the workspace given, or the default one of the image folder ``path`` (PATH/.imgcluster),
    or ``./.imgcluster`` when neither is given. ``create=False`` (readers): WorkspaceNotFound instead
    of creating one."""
    return Workspace.open(locate_workspace(path, workspace, reading=not create), create=create)


def check_key_format(run_key: str | None) -> None:
    """Refuse a run key that is not a short word of letters, digits, '.', '_' and '-'."""
    if run_key is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", run_key):
        raise ConfigError(f"Run key {run_key!r} may hold only letters, digits, '.', '_' and '-' (at most 64).")


def check_new_key(ws: Workspace, run_key: str | None) -> None:
    """Refuse a malformed key, or one a run of ``ws`` already has: runs are never overwritten."""
    check_key_format(run_key)
    if run_key is not None and run_key in {r.key for r in ws.runs()}:
        raise ConfigError(f"A run called {run_key!r} already exists in {ws.path}; runs are never overwritten. "
                          "Pick another --run-key.")


def check_has_clusters(ws: Workspace, record: RunRecord, doing: str = "file new images") -> None:
    """Refuse to ``doing`` with a run that has no clusters (every image would come back
    unassigned): ConfigError naming the runs of ``ws`` that have clusters."""
    if record.n_clusters > 0:
        return
    usable = [(key, images, clusters) for key, images, clusters in ws.run_counts() if clusters > 0]
    if usable:
        listed = ", ".join(f"{key} ({clusters} clusters, {images:,} images)" for key, images, clusters in usable[:5])
        hint = f"Runs with clusters: {listed}{' …' if len(usable) > 5 else ''}. Pass one of them with --run."
    else:
        hint = (f"No run in {ws.path} has clusters: cluster the collection again (`imgcluster runs show "
                f"{record.key}` says what to change).")
    raise ConfigError(f"Run {record.key} has no clusters ({record.n_images:,} image(s), all unclustered), so it "
                      f"cannot {doing}: every image would come back unassigned. {hint}")


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
    embedder = load_embedder(config)
    embed_report = embed_records(records, embedder, workspace, config, progress)
    usable = [r for r in records if r.content_hash not in embed_report.unusable]
    hashes = [r.content_hash or "" for r in usable]
    if len(usable) > IN_MEMORY_UP_TO:
        vectors: np.ndarray | ShardedVectors = workspace.embeddings_view(embedder.model_id, hashes)
    else:
        vectors = workspace.load_embeddings(embedder.model_id, hashes).reshape(len(usable), embedder.dim)
    return Embeddings(usable, vectors, embedder.describe(), embed_report)


def load_embedder(config: EmbedConfig) -> Embedder:
    """The embedding model ``config`` names, loaded on its device with its pooling and backend."""
    embedder = load_model(config.model, device=config.device, pooling=config.pooling, backend=config.backend,
                          precision=config.precision)
    log.info("model: %s (%s)", embedder.name, embedder.model_id)
    return embedder


def reload_run_model(record: RunRecord, device: str = "auto") -> Embedder:
    """The model that embedded ``record``, with the run's pooling and backend, refusing weights that changed since."""
    loaded = load_model(record.model_name, device=device, **recorded_settings(record.model))
    if loaded.model_id != record.model_id:
        raise ModelUnavailable(f"Run {record.key} was made with {record.model_id}, but {record.model_name} now "
                               f"loads as {loaded.model_id}; its weights changed. Re-run `imgcluster cluster`.")
    return loaded


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`embed_folder` did: the model, how many images were embedded now or found in the
    cache, the files skipped (with reasons), the time the embedding took, and where it ran
    (``engine``: ``{"name": "local"}``, or Ray's address, workers and devices); with ``shards_to``,
    ``export`` says where the Parquet shards are and what this call added (url, shards, rows,
    shards_written, rows_written)."""

    root: str
    workspace: Path
    model: dict[str, Any]
    n_images: int
    n_embedded: int
    n_cached: int
    skipped: list[ImageRecord]
    seconds: float
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "local"})
    export: dict[str, Any] | None = None


ENGINES = ("local", "ray")


def embed_folder(path: str | os.PathLike[str], *, config: EmbedConfig = EmbedConfig(),
                 scan_config: ScanConfig = ScanConfig(), workspace: str | os.PathLike[str] | None = None,
                 progress: StageProgress | None = None, engine: str = "local",
                 ray_config: RayConfig = RayConfig(), shards_to: str | None = None) -> EmbedSummary:
    """Scan and embed the images under ``path`` without clustering (the ``imgcluster embed`` step).

    Embeddings are cached by content in the workspace, so a later ``cluster`` with the same model
    starts from them, and an interrupted call resumes where it stopped. ``engine="ray"`` embeds on
    Ray workers (``ray_config``; ``pip install 'imgcluster[ray]'``) while this process writes the workspace.
    ``shards_to`` (a folder or fsspec URL) also receives the embeddings as Parquet shards, resumably
    (see ``imgcluster.store.vector_export``); read them with ``read_exported_shards``.
    """
    check_name(config.model)
    if engine not in ENGINES:
        raise UnknownName(f"No engine called {engine!r}. Choose one of: {', '.join(ENGINES)}.")
    if engine == "local":  # Ray workers have devices of their own, which this machine may lack
        check_device(config.device)
    elif config.backend != "torch":
        raise ConfigError(f"--engine ray runs the model with PyTorch on each worker, not {config.backend}; leave "
                          "--backend at torch, or use --engine local.")
    export = ShardExport(shards_to) if shards_to is not None else None  # a bad URL fails before any work
    stage = stage_progress(progress)
    if engine == "ray":
        from ..embed.ray_engine import embed_records_on_ray, import_ray  # an optional extra: only when asked
        import_ray()
    with scanned_workspace(path, workspace, scan_config, stage) as (ws, found):
        if engine == "ray":
            # This process only needs the model's id and description; the workers load it on their devices.
            embedder = load_embedder(dataclasses.replace(config, device="cpu"))
            on_ray = embed_records_on_ray(found.images, embedder, ws, config, ray_config, stage("embed"), export)
            report = on_ray.report
            model = dict(embedder.describe(), device=", ".join(on_ray.devices) or None)
            where = {"name": "ray", "address": on_ray.address, "workers": on_ray.workers}
        else:
            embedder = load_embedder(config)
            report = embed_records(found.images, embedder, ws, config, stage("embed"), export=export)
            model, where = embedder.describe(), {"name": "local"}
        return EmbedSummary(found.root, ws.path, model, report.n_requested, report.n_embedded,
                            report.n_cached, skipped_now(ws, found), report.seconds, where,
                            export.summary() if export is not None else None)


@contextlib.contextmanager
def scanned_workspace(path: str | os.PathLike[str], workspace: str | os.PathLike[str] | None,
                      scan_config: ScanConfig, stage: Callable[[str], Progress]) -> Iterator[tuple[Workspace,
                                                                                                  ScanResult]]:
    """The workspace of ``path``, locked, with ``path`` scanned into it; NoImages when there is
    nothing usable. Closed on the way out."""
    if not Path(path).expanduser().exists():
        raise NoImages(f"{path} does not exist. Give a folder (or a file) that holds images.")
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        found = scan(path, workspace=ws, config=scan_config, progress=stage("scan"))
        if not found.images:
            raise NoImages(no_images_message(found))
        yield ws, found
    finally:
        ws.close()


def reduce(vectors: np.ndarray, config: ReduceConfig = ReduceConfig(), progress: Progress | None = None) -> Reduction:
    """Fit the clustering-space reducer and the 2-D map reducer on ``vectors`` (n, d).

    ``progress(done, total)`` counts the optimisation epochs of both fits (UMAP's epochs, t-SNE's
    iterations, one unit for other reducers); the neighbour graphs and initial layouts before them
    tick nothing."""
    n = len(vectors)
    steps = _Steps(progress, [fit_units(config.method, config.n_epochs, n),
                              fit_units(config.map_method, config.map_n_epochs, n)])
    knn = None
    if n >= _SHARED_KNN_FROM and "umap" in (config.method, config.map_method):
        knn = nearest_neighbors(vectors, effective_neighbors(config.n_neighbors, n), config.metric, config.seed)
    space_reducer = make_reducer(config.method, **reducer_settings(config, "space", knn))
    space_reducer.fit(vectors, **progress_for(space_reducer.fit, steps.within(0)))
    steps.finish(0)
    map_reducer = make_reducer(config.map_method, **reducer_settings(config, "map", knn))
    map_reducer.fit(vectors, **progress_for(map_reducer.fit, steps.within(1)))
    steps.finish(1)
    return Reduction(np.asarray(space_reducer.embedding_, dtype=np.float32),
                     np.asarray(map_reducer.embedding_, dtype=np.float32)[:, :2], space_reducer, map_reducer)


class _Steps:
    """One ``progress(done, total)`` over consecutive steps of known sizes: each step's own
    (done, total) is scaled into its share, so the whole stays monotone and ends at its total
    even when a step's count differs from the planned size."""

    def __init__(self, progress: Progress | None, sizes: Sequence[int]):
        self.progress, self.ends = progress, np.cumsum(sizes).tolist()
        self.total = self.ends[-1] if self.ends else 0
        self._report(0)

    def within(self, step: int) -> Progress:
        start = self.ends[step - 1] if step else 0
        size = self.ends[step] - start

        def report(done: int, total: int) -> None:
            self._report(start + (size * min(done, total) // total if total > 0 else 0))
        return report

    def finish(self, step: int) -> None:
        self._report(self.ends[step])

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.total)


def progress_for(method: Callable[..., Any], progress: Any) -> dict[str, Any]:
    """``{"progress": progress}`` when ``method`` takes a ``progress`` argument, else nothing: a
    reducer or namer registered before stages reported progress keeps working."""
    import inspect

    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return {}
    takes = "progress" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return {"progress": progress} if takes else {}


def cluster_points(space: np.ndarray, config: ClusterConfig = ClusterConfig(), *,
                   embeddings: np.ndarray | None = None, progress: Progress | None = None) -> Clustering:
    """Cluster points of the clustering space; ``config.k`` selects k-means unless another
    k-taking method is named; a given ``min_cluster_size`` turns auto into plain hdbscan.

    ``embeddings`` (the vectors ``space`` was reduced from, same rows) let auto mode score its
    candidates in the embedding space, as ``cluster`` does; other methods ignore them.
    ``progress(done, total)``: auto mode's candidates scored, then its final fit; one step otherwise.
    A setting given on purpose that the method does not take is a ConfigError (``cluster.settle``)."""
    clusterer, params = fit_clusterer(space, config, embeddings=embeddings, progress=progress)
    return Clustering(clusterer.labels_, clusterer.probabilities_, clusterer, params)


def fit_clusters(vectors: np.ndarray, reduce_config: ReduceConfig = ReduceConfig(),
                 cluster_config: ClusterConfig = ClusterConfig(), *, timings: dict[str, float] | None = None,
                 progress: StageProgress | None = None) -> tuple[Reduction, Clustering]:
    """Reduce and cluster L2-normalised ``vectors`` (n, d): an array, or ``ShardedVectors`` read from
    disk as needed (the sample, then the other rows a batch at a time); results cover all n points.

    Above ``reduce_config.fit_sample`` points, UMAP and the clusterer are fitted on a seeded random
    sample (grown so that a group of a given ``min_cluster_size`` holds 20 of its points, up to
    100,000: ``cluster.settings.fit_sample_for``) and every other point is filed by the k-NN
    predictor (cluster, probability, and its clustering-space and map positions as
    similarity-weighted means of its neighbours'): the seed article's "fit on a sample, transform
    the rest", without UMAP's slow transform.
    With ``cluster_config.noise == "attach"``, unclustered points then join the cluster their nearest
    clustered points vote for, when that vote is at least ``attach_threshold`` sure. ``Clustering.how``
    says, per point, which of these placed it (fit, filed or attached).
    """
    timings = {} if timings is None else timings
    stage = stage_progress(progress)
    n = len(vectors)
    # Grown when the user's min_cluster_size would hold too few points of the sample (issue 25).
    fit_sample = fit_sample_for(reduce_config.fit_sample, n, cluster_config)
    sampled = fit_sample < n
    rows = (np.sort(np.random.default_rng(reduce_config.seed).choice(n, fit_sample, replace=False))
            if sampled else np.arange(n))
    started = time.perf_counter()
    fitted = vectors[rows]  # read once: ShardedVectors come from disk
    reduction = reduce(fitted, reduce_config, progress=stage("reduce"))
    timings["reduce"] = time.perf_counter() - started
    started = time.perf_counter()
    # Sizes in cluster_config are the whole collection's; the fit on the sample scales them.
    clusterer, params = fit_clusterer(reduction.space, cluster_config, embeddings=fitted, progress=stage("cluster"),
                                      collection_size=n)
    clustering = Clustering(clusterer.labels_, clusterer.probabilities_, clusterer, params)
    timings["cluster"] = time.perf_counter() - started
    if sampled:
        log.info("fitted on a sample of %d of %d images; filing the other %d with the predictor, %d at a time",
                 len(rows), n, n - len(rows), _FILE_BATCH)
        reduction, clustering = _file_rest(vectors, rows, fitted, reduction, clustering, reduce_config.seed,
                                           timings, stage)
    del fitted
    if cluster_config.noise == "attach":
        clustering = _attach_noise(vectors, clustering, cluster_config, timings)
    return reduction, clustering


def _file_rest(vectors: np.ndarray, rows: np.ndarray, fitted: np.ndarray, reduction: Reduction,
               clustering: Clustering, seed: int, timings: dict[str, float],
               stage: Callable[[str], Progress]) -> tuple[Reduction, Clustering]:
    """Extend a fit on the sample ``rows`` (their vectors: ``fitted``) to every vector through the
    k-NN predictor, reading the other rows ``_FILE_BATCH`` at a time."""
    n = len(vectors)
    started = time.perf_counter()
    fit_rows = np.zeros(n, dtype=bool)  # 1 byte an image; the list of other rows would take 8
    fit_rows[rows] = True
    rest = n - len(rows)
    predictor = Predictor(seed=seed).fit(fitted, clustering.labels, clustering.probabilities, reduction.map, rows)
    labels = np.empty(n, dtype=np.int64)
    probabilities = np.empty(n)
    space = np.empty((n, reduction.space.shape[1]), dtype=np.float32)
    map_xy = np.empty((n, 2), dtype=np.float32)
    labels[rows], probabilities[rows] = clustering.labels, clustering.probabilities
    space[rows], map_xy[rows] = reduction.space, reduction.map
    done = 0
    stage("file")(done, rest)
    for start in range(0, n, _FILE_BATCH):  # in row order: each batch reads one or two shards
        chunk = start + np.flatnonzero(~fit_rows[start:start + _FILE_BATCH])
        if not len(chunk):
            continue
        filed = predictor.predict(vectors[chunk])
        labels[chunk], probabilities[chunk] = filed.clusters, filed.membership_probability
        space[chunk], map_xy[chunk] = filed.place(reduction.space), np.c_[filed.x, filed.y]
        done += len(chunk)
        stage("file")(done, rest)
    timings["file_rest"] = time.perf_counter() - started
    # One shared str per value: np.full(n, "filed", dtype=object) makes a 54-byte str per image.
    how = np.array(["filed", "fit"], dtype=object)[fit_rows.view(np.uint8)]
    params = dict(clustering.params, fit_sample=len(rows), filed_by_predictor=rest)
    return (Reduction(space, map_xy, reduction.space_reducer, reduction.map_reducer),
            Clustering(labels, probabilities, clustering.clusterer, params, how))


def _attach_noise(vectors: np.ndarray, clustering: Clustering, config: ClusterConfig,
                  timings: dict[str, float]) -> Clustering:
    started = time.perf_counter()
    result = attach_noise(vectors, clustering.labels, clustering.probabilities, config.attach_threshold, config.seed)
    before = np.array("fit", dtype=object) if clustering.how is None else np.asarray(clustering.how, dtype=object)
    how = np.where(result.attached, np.array("attached", dtype=object), before)  # shared strs, not one per image
    timings["attach_noise"] = time.perf_counter() - started
    params = dict(clustering.params, noise="attach", attach_threshold=config.attach_threshold,
                  attached=int(result.attached.sum()))
    return Clustering(result.labels, result.probabilities, clustering.clusterer, params, how)



def stage_progress(progress: StageProgress | None) -> Callable[[str], Progress]:
    """Per-stage callbacks ``(done, total)`` that report to ``progress(stage, done, total)`` (or nowhere)."""
    def for_stage(name: str) -> Progress:
        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(name, done, total)
        return report
    return for_stage


def skipped_now(ws: Workspace, found: ScanResult) -> list[ImageRecord]:
    """The scan's skips plus the files that failed to decode while embedding."""
    # Only the skipped rows become records: at 1M images, all of them would be 0.6 GB more.
    return ws.images([r.path for r in found.images + found.skipped], status="skipped")


def no_images_message(found: ScanResult) -> str:
    """Why a scan found nothing to cluster, with what to do: no images, or every file skipped."""
    if not found.skipped:
        return (f"No images found under {found.root}. imgcluster reads JPEG, PNG, WebP, BMP, GIF and TIFF "
                "files in that folder and its sub-folders.")
    reasons = "; ".join(f"{Path(r.path).name}: {r.skip_reason}" for r in found.skipped[:5])
    return (f"None of the {len(found.skipped)} files under {found.root} could be used ({reasons}"
            f"{' …' if len(found.skipped) > 5 else ''}).")
