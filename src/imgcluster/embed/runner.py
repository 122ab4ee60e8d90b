"""Embed catalogued images in batches: decode in threads while the model runs, commit every few
seconds (see ``PendingCommit``).

Only content hashes without an embedding from this model are processed, so a re-run embeds
nothing again and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..config import EmbedConfig
from ..scan import hash_bytes, load_rgb, make_thumbnail
from ..store import ImageRecord, Workspace
from ..store.vector_export import ShardExport
from .base import Embedder
from .gpu_decode import GpuJpegDecoder, JpegHeader, gpu_decoder_for, read_jpeg_header

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class EmbedReport:
    """What one embedding pass did."""

    model_id: str
    n_requested: int     # distinct contents asked for
    n_embedded: int      # newly embedded now
    n_cached: int        # already in the store
    undecodable: dict[str, str]  # content hash → reason
    seconds: float
    # Content hashes whose file no longer held that content when it was read (rewritten since the
    # scan): nothing was stored under them; the next scan hashes the file again.
    changed: frozenset[str] = frozenset()

    @functools.cached_property
    def unusable(self) -> frozenset[str]:
        """Content hashes with no embedding after this pass: undecodable or changed since the scan
        (computed once: callers test every record against it)."""
        return frozenset(self.undecodable) | self.changed


@dataclass(frozen=True)
class Prepared:
    """One image ready for the model: its pixels and thumbnail, or why it could not be decoded, or
    (for GPU decoding) its JPEG bytes and header, decoded with the rest of its batch."""

    content_hash: str
    pixels: np.ndarray | None
    thumbnail: tuple[bytes, int, int] | None
    error: str | None
    jpeg: JpegHeader | None = None


@dataclass(frozen=True)
class Work:
    """What an embedding pass has to do: (content hash, path) pairs not yet embedded by the model,
    which of them are video key-frames, which already have a thumbnail, and the distinct contents asked for."""

    todo: list[tuple[str, str]]
    frames: set[str]
    have_thumbnails: set[str]
    total: int


def plan_work(records: Sequence[ImageRecord], embedder: Embedder, workspace: Workspace) -> Work:
    """Register ``embedder`` in ``workspace`` and list the contents it has not embedded yet."""
    workspace.register_model(embedder.model_id, embedder.name, embedder.dim, embedder.describe())
    path_of: dict[str, str] = {}
    frames: set[str] = set()  # video key-frames: their pixels are JPEGs in the workspace, not files
    for record in records:
        if record.content_hash is not None:
            path_of.setdefault(record.content_hash, record.path)
            if record.source_path is not None:
                frames.add(record.content_hash)
    done_before = workspace.embedded_hashes(embedder.model_id)
    todo = [(h, p) for h, p in path_of.items() if h not in done_before]
    log.info("embedding %d images with %s (%d already cached)", len(todo), embedder.name, len(path_of) - len(todo))
    return Work(todo, frames, workspace.thumbnail_hashes(h for h, _ in todo), len(path_of))


def content_paths(records: Sequence[ImageRecord]) -> dict[str, str]:
    """Content hash → the path of the first record holding it (what a shard export writes beside the vector)."""
    paths: dict[str, str] = {}
    for record in records:
        if record.content_hash is not None:
            paths.setdefault(record.content_hash, record.path)
    return paths


# The reason recorded for a file whose bytes no longer match the content hash the scan gave it.
CHANGED_REASON = "the file changed while it was being embedded; run the command again to include it"


class ContentChanged(Exception):
    """The bytes read now are not the content the scan hashed: embedding them would store the new
    picture's vector under the old content's hash, and every later file with the old content would
    reuse it."""


def read_verified(source: str | bytes, content_hash: str) -> bytes:
    """The bytes of ``source`` (a path, or bytes already read), checked against ``content_hash``.

    The file is read once and both hashed and decoded from these bytes, so the vector stored under
    a hash is always the embedding of the bytes that hash names (a file rewritten between the
    scan and now raises ``ContentChanged``)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if hash_bytes(data) != content_hash:
        raise ContentChanged(CHANGED_REASON)
    return data


def prepare_image(embedder: Embedder, content_hash: str, source: str | bytes | None, thumbnail: bool) -> Prepared:
    """Decode ``source`` (a path, or a key-frame's JPEG bytes) and preprocess it for ``embedder``;
    a decoder failure becomes the reason, never an exception; a file whose bytes no longer match
    ``content_hash`` gets ``CHANGED_REASON``."""
    try:
        if source is None:
            raise ValueError("the key-frame's pixels are not in the workspace; scan the video again")
        image = load_rgb(read_verified(source, content_hash), min_side=embedder.input_size)
        pixels = embedder.preprocess(image)
        return Prepared(content_hash, pixels, make_thumbnail(image) if thumbnail else None, None)
    except ContentChanged:
        return Prepared(content_hash, None, None, CHANGED_REASON)
    except Exception as error:  # any decoder failure is a property of the file
        return Prepared(content_hash, None, None, _decode_reason(error))


def read_for_device(embedder: Embedder, content_hash: str, source: str | bytes | None, thumbnail: bool) -> Prepared:
    """A worker's share when the batch is decoded on the GPU: read the file and its JPEG header;
    what nvJPEG cannot take (see ``read_jpeg_header``) is decoded with Pillow here instead."""
    try:
        data = read_verified(source, content_hash) if source is not None else None
    except ContentChanged:
        return Prepared(content_hash, None, None, CHANGED_REASON)
    except OSError:
        data = None  # prepare_image reads it again and records the OS's reason
    header = read_jpeg_header(data) if data is not None else None
    if header is not None:
        return Prepared(content_hash, None, None, None, header)
    return prepare_image(embedder, content_hash, data if data is not None else source, thumbnail)


def embed_records(records: Sequence[ImageRecord], embedder: Embedder, workspace: Workspace,
                  config: EmbedConfig = EmbedConfig(), progress: Progress | None = None,
                  device_decoder: GpuJpegDecoder | None = None, export: ShardExport | None = None) -> EmbedReport:
    """Make sure every record's content has an embedding from ``embedder`` in ``workspace``.

    On CUDA with a working torchvision, JPEGs are decoded on the GPU (``gpu_decode``); a
    ``device_decoder`` given here is used instead of looking for one. With ``export``, every committed
    batch is also written there as a Parquet shard, and the records' embeddings cached before are
    exported at the end (see ``store.vector_export``)."""
    started = time.perf_counter()
    work = plan_work(records, embedder, workspace)
    todo, frames, have_thumbs, total = work.todo, work.frames, work.have_thumbnails, work.total
    # Only with work to do: asking for the device (and the batch size it runs best at) may load
    # torch and the model, which an all-cached run never needs.
    decoder = device_decoder if device_decoder is not None or not todo else gpu_decoder_for(embedder)
    if export is not None:
        export.open(embedder.model_id, embedder.dim, content_paths(records))
    done = total - len(todo)
    if progress:
        progress(done, total)

    def source(item: tuple[str, str]) -> tuple[str, str | bytes | None]:
        # Runs in this thread (``_prefetched`` pulls items here): the catalogue is read by one thread.
        content_hash, path = item
        return content_hash, workspace.frame_jpeg(content_hash) if content_hash in frames else path

    def prepare(item: tuple[str, str | bytes | None]) -> Prepared:
        content_hash, path = item
        if decoder is not None:
            return read_for_device(embedder, content_hash, path, content_hash not in have_thumbs)
        return prepare_image(embedder, content_hash, path, content_hash not in have_thumbs)

    undecodable: dict[str, str] = {}
    changed: set[str] = set()
    read_from = dict(todo)  # content hash -> the file read for it
    batch_size = (config.batch_size or embedder.batch_size) if todo else 1
    pending = PendingCommit(workspace, embedder.model_id, embedder.dim, config.commit_every, export)
    for batch in _batches(_prefetched(map(source, todo), prepare, config.workers, max(8, 2 * batch_size)),
                          batch_size):
        on_device: Any = None
        if decoder is not None:
            batch, on_device = _decode_on_device(decoder, embedder, batch, have_thumbs)
        good = [item for item in batch if item.pixels is not None]
        failed, changed_now = split_changed({item.content_hash: str(item.error) for item in batch
                                             if item.pixels is None})
        vectors = np.empty((0, embedder.dim), dtype=np.float32)
        if good:
            # Images decoded on the device come first in ``good``, in the order of their tensor.
            n_device = 0 if on_device is None else len(on_device)
            host = [item.pixels for item in good[n_device:]]
            pixels: Any = np.stack(host) if host else None  # type: ignore[arg-type]
            if on_device is not None:
                pixels = on_device if pixels is None else _concat(on_device, pixels)
            vectors = normalise(embedder.embed(pixels))
        pending.add(good, vectors, failed, {h: read_from[h] for h in changed_now})
        undecodable.update(failed)
        changed.update(changed_now)
        done += len(batch)
        if pending.due():
            pending.commit()
        if progress:
            progress(done, total)
    pending.commit()
    if export is not None:
        export.fill(workspace)
    warn_changed(changed)
    return EmbedReport(embedder.model_id, total, len(todo) - len(undecodable) - len(changed), total - len(todo),
                       undecodable, time.perf_counter() - started, frozenset(changed))


def split_changed(failed: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """Decode failures (hash → reason) apart from the files that changed since the scan (hashes):
    the first are properties of the content, the second of the moment it was read."""
    changed = {h for h, reason in failed.items() if reason == CHANGED_REASON}
    return {h: reason for h, reason in failed.items() if h not in changed}, changed


def warn_changed(changed: set[str]) -> None:
    if changed:
        log.warning("%d file(s) changed while they were being embedded; they are left out of this run and "
                    "will be embedded as they are now on the next run", len(changed))


def _decode_on_device(decoder: GpuJpegDecoder, embedder: Embedder, batch: list[Prepared],
                      have_thumbs: set[str]) -> tuple[list[Prepared], Any]:
    """Decode the batch's JPEGs on the device. Returns the batch reordered (the decoded images
    first, each with a placeholder for its pixels, then the others; a JPEG nvJPEG refused is
    decoded with Pillow now) and the decoded pixels, or None when there were none."""
    jpegs = [item for item in batch if item.jpeg is not None]
    if not jpegs:
        return batch, None
    pixels, thumbnails, refused = decoder([item.jpeg for item in jpegs],  # type: ignore[misc]
                                          [item.content_hash not in have_thumbs for item in jpegs])
    refused_set = set(refused)
    decoded = [dataclasses.replace(item, pixels=_ON_DEVICE, jpeg=None,
                                   thumbnail=make_thumbnail(thumb) if thumb is not None else None)
               for i, (item, thumb) in enumerate(zip(jpegs, thumbnails)) if i not in refused_set]
    retried = [prepare_image(embedder, jpegs[i].content_hash, jpegs[i].jpeg.data,  # type: ignore[union-attr]
                             jpegs[i].content_hash not in have_thumbs) for i in refused]
    others = [item for item in batch if item.jpeg is None]
    return decoded + retried + others, pixels if decoded else None


# Stands in for the pixels of an image decoded on the device (they are in the batch tensor).
_ON_DEVICE = np.zeros((0,), dtype=np.float32)


def _concat(on_device: Any, host: np.ndarray) -> Any:
    import torch

    return torch.cat([on_device, torch.from_numpy(host).to(on_device.device)])


class PendingCommit:
    """Forward batches waiting to be written: committed together every ``every`` images or
    ``COMMIT_SECONDS`` seconds, whichever comes first, so small CPU batches do not each cost a shard
    file and a transaction, and an interruption loses at most a few seconds of work. With ``export``,
    each committed batch is then written there too, as one Parquet shard."""

    COMMIT_SECONDS = 5.0

    def __init__(self, workspace: Workspace, model_id: str, dim: int, every: int = 256,
                 export: ShardExport | None = None):
        self.workspace, self.model_id, self.dim, self.every = workspace, model_id, dim, every
        self.export = export
        self._reset()

    def _reset(self) -> None:
        self.hashes: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.thumbnails: dict[str, tuple[bytes, int, int]] = {}
        self.failed: dict[str, str] = {}
        self.changed: dict[str, str] = {}
        self.since = time.monotonic()

    def add(self, good: Sequence[Prepared], vectors: np.ndarray, failed: dict[str, str],
            changed: dict[str, str] | None = None) -> None:
        """Queue a batch: decoded items and their vectors, decode failures (hash -> reason) and the
        files found changed since the scan (hash -> the path that was read)."""
        self.hashes.extend(item.content_hash for item in good)
        self.vectors.append(vectors)
        self.thumbnails.update({item.content_hash: item.thumbnail for item in good if item.thumbnail is not None})
        self.failed.update(failed)
        self.changed.update(changed or {})

    def due(self) -> bool:
        return (len(self.hashes) + len(self.failed) + len(self.changed) >= self.every
                or time.monotonic() - self.since >= self.COMMIT_SECONDS)

    def commit(self) -> None:
        if self.hashes or self.failed or self.changed:
            vectors = np.concatenate(self.vectors) if self.vectors else np.empty((0, self.dim), dtype=np.float32)
            self.workspace.save_batch(self.model_id, self.hashes, vectors, thumbnails=self.thumbnails,
                                      undecodable=self.failed, changed=self.changed, changed_reason=CHANGED_REASON)
            if self.export is not None and self.hashes:
                # After the workspace's commit: the export never holds a vector the workspace lacks.
                self.export.write(self.hashes, vectors)
        self._reset()


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero) so dot products are cosine similarities."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _decode_reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    if "truncated" in text.lower():
        return f"truncated or damaged image data ({text})"
    return f"cannot decode: {text}"


def _prefetched(items: Iterable[T], work: Callable[[T], R], workers: int, depth: int) -> Iterator[R]:
    """``map(work, items)`` on a thread pool, in order, with at most ``depth`` results in flight."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Any] = deque()
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(work, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            for item in iterator:
                pending.append(pool.submit(work, item))
                break
            yield result


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
