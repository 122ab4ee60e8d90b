"""Embedding on a Ray cluster (``imgcluster embed --engine ray``, ``pip install 'imgcluster[ray]'``).

Ray Data streams the (content hash, source) rows still to embed through a fixed pool of actors. Each
actor loads the model once (one per GPU, else one per CPU core) and decodes, preprocesses and embeds
with the single-process runner's own code (``prepare_image``, ``Embedder.embed``, ``normalise``), so
the vectors are the same. Vectors, thumbnails and decode failures come back to this process, the only
one that opens the workspace, which writes them as they arrive (``PendingCommit``, as in one process):
a worker killed mid-run has its batch retried on a restarted actor (``RayConfig.retries`` times, then
the command stops with ``WorkerDied``), and an interrupted command resumes where it stopped. Workers
never touch the workspace, so on a cluster they need the image files (a shared file system) and
imgcluster installed, not the workspace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..config import EmbedConfig, RayConfig
from ..errors import ConfigError, ModelUnavailable, WorkerDied
from ..store import ImageRecord, Workspace
from ..store.vector_export import ShardExport
from .base import Embedder
from .runner import (EmbedReport, PendingCommit, Prepared, content_paths, normalise, plan_work, prepare_image,
                     split_changed, warn_changed)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

INSTALL_HINT = "pip install 'imgcluster[ray]'"
# Images per Ray task (one block of rows), the work a dead worker's retry repeats: under a second of
# efficientnet-lite0 on one CPU core, so per-task overhead (a few ms) stays small and a kill costs little.
# A dead worker's actor is restarted without limit (Ray Data's max_restarts=-1: sporadic deaths over a long
# run are survived), but a task is retried only ``RayConfig.retries`` times (Ray Data's default,
# max_task_retries=-1, retries a batch that kills its worker every time until Ctrl-C).
ROWS_PER_TASK = 32
GPU_ROWS_PER_TASK = 256  # a GPU worker's forward batch (see the families' batch_size)


@dataclass(frozen=True)
class RayEmbedding:
    """What a Ray embedding pass did: the runner's report, and where it ran."""

    report: EmbedReport
    address: str | None   # as given; None: a local Ray started for the pass, or the session already open
    workers: int
    devices: list[str]    # the devices the workers' models ran on


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (pyarrow and pandas come with ray[data])
    except ImportError as error:
        raise ConfigError(f"--engine ray needs Ray Data ({error.name} is missing): {INSTALL_HINT}.") from None
    return ray


def embed_records_on_ray(records: Sequence[ImageRecord], embedder: Embedder, workspace: Workspace,
                         config: EmbedConfig = EmbedConfig(), ray_config: RayConfig = RayConfig(),
                         progress: Progress | None = None, export: ShardExport | None = None) -> RayEmbedding:
    """Make sure every record's content has an embedding from ``embedder``'s model in ``workspace``,
    computed by Ray workers that each load the model themselves.

    ``embedder`` is this process's copy, used for the model's id, size and description only (load it
    on the CPU). Ray is started locally when ``ray_config.address`` is unset and no Ray session is open;
    an open session (a notebook's, the tests') is used as it is and left running. With ``export``, this
    process also writes each committed batch there as a Parquet shard (see ``store.vector_export``).
    """
    ray = import_ray()
    started = time.perf_counter()
    work = plan_work(records, embedder, workspace)
    if export is not None:
        export.open(embedder.model_id, embedder.dim, content_paths(records))
    done = work.total - len(work.todo)
    if progress:
        progress(done, work.total)
    undecodable: dict[str, str] = {}
    changed: set[str] = set()
    read_from = dict(work.todo)  # content hash -> the file read for it
    devices: set[str] = set()
    workers = 0
    if work.todo:
        with _connected(ray, ray_config):
            workers, remote = _worker_resources(ray, config, ray_config)
            per_task = max(ROWS_PER_TASK if "num_gpus" not in remote else GPU_ROWS_PER_TASK, config.batch_size or 0)
            rows = [_row(h, path, workspace, h in work.frames, h not in work.have_thumbnails) for h, path in work.todo]
            log.info("embedding %d images on Ray with %d workers (%s each), %d images a task", len(rows), workers,
                     remote, per_task)
            dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // per_task)))
            with warnings.catch_warnings():
                # Ray 2.60 deprecates **ray_remote_args but names no other way to set max_task_retries.
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
                dataset = dataset.map_batches(
                    EmbedWorker, batch_size=None, batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=workers),
                    fn_constructor_kwargs={"model": embedder.name, "model_id": embedder.model_id,
                                           "device": config.device, "pooling": config.pooling,
                                           "batch_size": config.batch_size, "threads": config.workers},
                    **remote, **{"max_restarts": -1, "max_task_retries": ray_config.retries})
            pending = PendingCommit(workspace, embedder.model_id, embedder.dim, config.commit_every, export)
            batches = dataset.iter_batches(batch_size=None, batch_format="numpy")
            try:
                for batch in _reporting_deaths(ray, batches, ray_config.retries, per_task):
                    good, vectors, failed = _unpack(batch)
                    failed, changed_now = split_changed(failed)
                    pending.add(good, vectors, failed, {h: read_from[h] for h in changed_now})
                    undecodable.update(failed)
                    changed.update(changed_now)
                    devices.update(str(d) for d in batch["device"])
                    done += len(batch["content_hash"])
                    if pending.due():
                        pending.commit()
                    if progress:
                        progress(done, work.total)
            except WorkerDied:
                pending.commit()  # what came back before the batch that kept killing workers is kept
                raise
            finally:
                # Stops the executor and its actors when the loop ends early (an error, Ctrl-C).
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
            pending.commit()
    if export is not None:
        export.fill(workspace)
    warn_changed(changed)
    report = EmbedReport(embedder.model_id, work.total, len(work.todo) - len(undecodable) - len(changed),
                         work.total - len(work.todo), undecodable, time.perf_counter() - started, frozenset(changed))
    return RayEmbedding(report, ray_config.address, workers, sorted(devices))


class EmbedWorker:
    """A Ray actor: one copy of the model, turning batches of rows into vectors, thumbnails and reasons."""

    def __init__(self, model: str, model_id: str, device: str, pooling: str | None, batch_size: int | None,
                 threads: int):
        from .registry import load_model

        self.embedder = load_model(model, device=device, pooling=pooling)
        if self.embedder.model_id != model_id:
            raise ModelUnavailable(f"This Ray worker loads {model} as {self.embedder.model_id}, but the command "
                                   f"loaded it as {model_id}: the weights differ between machines. Install the "
                                   "same model files on every node.")
        self.batch_size = batch_size or self.embedder.batch_size
        self.pool = ThreadPoolExecutor(max_workers=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embedder, hashes = self.embedder, batch["content_hash"]

        def prepare(i: int) -> Prepared:
            source = (bytes(batch["jpeg"][i]) or None) if batch["frame"][i] else str(batch["path"][i])
            return prepare_image(embedder, str(hashes[i]), source, bool(batch["thumbnail"][i]))

        prepared = list(self.pool.map(prepare, range(len(hashes))))
        vectors = np.zeros((len(prepared), embedder.dim), dtype=np.float32)
        good = [i for i, item in enumerate(prepared) if item.pixels is not None]
        for start in range(0, len(good), self.batch_size):
            rows = good[start:start + self.batch_size]
            vectors[rows] = normalise(embedder.embed(np.stack([prepared[i].pixels for i in rows])))
        thumbs = [item.thumbnail or (b"", 0, 0) for item in prepared]
        return {"content_hash": hashes, "vector": vectors,
                "error": np.array([item.error or "" for item in prepared], dtype=object),
                "thumbnail": np.array([t[0] for t in thumbs], dtype=object),
                "thumbnail_width": np.array([t[1] for t in thumbs], dtype=np.int32),
                "thumbnail_height": np.array([t[2] for t in thumbs], dtype=np.int32),
                "device": np.full(len(prepared), str(getattr(embedder, "device", "cpu")), dtype=object)}


def _reporting_deaths(ray: ModuleType, batches: Iterator[dict[str, np.ndarray]], retries: int,
                      per_task: int) -> Iterator[dict[str, np.ndarray]]:
    """``batches``, turning Ray's error for a task whose worker died past its retries into ``WorkerDied``."""
    try:
        yield from batches
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, ray.exceptions.RayActorError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        # Ray's own message (logged above by Ray Data) names the actor, not the images: a task is a block of rows.
        raise WorkerDied(
            f"A Ray worker died {retries + 1} times on the same batch of up to {per_task} images "
            f"({type(cause).__name__}). A file in it may crash the decoder or exhaust the worker's memory. What "
            "was embedded before is saved; run the command again to retry the rest, with --retries to allow more "
            "attempts, or --engine local to embed the rest in one process.") from error


def _row(content_hash: str, path: str, workspace: Workspace, frame: bool, thumbnail: bool) -> dict[str, Any]:
    # A video key-frame's pixels live in the workspace, which workers cannot open: they travel as JPEG.
    jpeg = (workspace.frame_jpeg(content_hash) or b"") if frame else b""
    return {"content_hash": content_hash, "path": "" if frame else path, "frame": frame, "jpeg": jpeg,
            "thumbnail": thumbnail}


def _unpack(batch: dict[str, np.ndarray]) -> tuple[list[Prepared], np.ndarray, dict[str, str]]:
    """A worker's output → the decoded items (with thumbnails), their vectors, and hash → reason."""
    hashes, errors = [str(h) for h in batch["content_hash"]], [str(e) for e in batch["error"]]
    ok = np.array([not e for e in errors], dtype=bool)
    good = [Prepared(h, None, (bytes(batch["thumbnail"][i]), int(batch["thumbnail_width"][i]),
                               int(batch["thumbnail_height"][i])) if len(batch["thumbnail"][i]) else None, None)
            for i, h in enumerate(hashes) if ok[i]]
    failed = {h: e for h, e in zip(hashes, errors) if e}
    return good, np.asarray(batch["vector"], dtype=np.float32)[ok], failed


def _worker_resources(ray: ModuleType, config: EmbedConfig, ray_config: RayConfig) -> tuple[int, dict[str, float]]:
    """How many workers, and the CPUs and GPUs each asks Ray for."""
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = 0 if config.device == "cpu" else int(resources.get("GPU", 0))
    workers = ray_config.workers or gpus or cpus
    if gpus:
        return workers, {"num_cpus": 1, "num_gpus": min(1.0, gpus / workers)}
    # torch in an actor uses as many threads as the actor has CPUs (Ray sets OMP_NUM_THREADS).
    return workers, {"num_cpus": max(1, cpus // workers)}


@contextlib.contextmanager
def _connected(ray: ModuleType, ray_config: RayConfig) -> Iterator[None]:
    """A Ray session for the pass: the caller's open one, the cluster at ``address``, or a local one."""
    ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI draws its own
    if ray.is_initialized():
        yield
        return
    if ray_config.address:
        ray.init(address=ray_config.address, log_to_driver=False)
    else:
        # A local Ray for one command: no dashboard, and no usage report sent unless the user asked. Every
        # core, and a CPU for each worker asked for, so a pool larger than the machine still starts.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=max(os.cpu_count() or 1, ray_config.workers or 1), include_dashboard=False,
                 log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
