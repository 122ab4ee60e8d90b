"""Embeddings copied out of the workspace as Parquet shards at any fsspec URL (``imgcluster embed --shards-to``).

The workspace stays the source of truth; the export is a copy other tools and machines can read.
Layout at the URL (a local folder, file://, memory://, s3://, gs://, az:// with the store's fsspec
package installed)::

    URL/part-<16 hex>.parquet   one shard per committed batch; columns content_hash (string),
                                path (string), vector (fixed_size_list<float32>[d]); the schema's
                                metadata names the model (imgcluster.model_id) and d (imgcluster.dim)

A shard's name is a digest of the model and its content hashes, so the same batch always gets the
same name. A shard is written whole or not at all: on a local file system to a temporary name
(``.tmp-…``, never read) renamed into place, on an object store in one put. On opening, the hashes
already in the shards are read (one column per shard) and never written again, so a re-run, or a run
after an interruption, writes only shards for what is missing.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from .workspace import Workspace

log = logging.getLogger(__name__)

SHARD_PREFIX, SHARD_SUFFIX = "part-", ".parquet"
# Rows per shard when exporting embeddings already in the workspace (cached before this export):
# 10,000 x 512 float32 is 20 MB, one put to an object store.
FILL_ROWS = 10_000
_MODEL_KEY, _DIM_KEY = b"imgcluster.model_id", b"imgcluster.dim"
INSTALL_HINT = "pip install 'imgcluster[shards]'"


@dataclass(frozen=True)
class ExportedVectors:
    """Embeddings read back from exported shards: content hashes and image paths (n,), aligned with
    ``vectors`` (n, d) float32, and the model that made them. Rows are in shard-name order, each
    content hash once."""

    content_hashes: list[str]
    paths: list[str]
    vectors: np.ndarray
    model_id: str


def filesystem_of(url: str) -> tuple[Any, str]:
    """The fsspec file system and root path of ``url``; a ConfigError naming the fix when the scheme is
    unknown or its package is not installed. Does no I/O."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise ConfigError(f"--shards-to needs fsspec: {INSTALL_HINT}.") from None
    try:
        fs, root = url_to_fs(url)
    except ValueError as error:  # fsspec: "Protocol not known: …"
        raise ConfigError(f"Cannot write shards to {url!r}: {error}. Give a folder, or a URL such as file://, "
                          "s3://, gs:// or memory://.") from None
    except ImportError as error:  # fsspec: "Install s3fs to access S3"
        raise ConfigError(f"Cannot write shards to {url!r}: {error} (pip install it, then run again).") from None
    return fs, root.rstrip("/")


class ShardExport:
    """Writes embeddings as Parquet shards to ``url`` (see the module docstring); ``open`` it before writing."""

    def __init__(self, url: str):
        self.url = url
        self.fs, self.root = filesystem_of(url)
        self.local = "file" in _protocols(self.fs)

    def open(self, model_id: str, dim: int, paths: dict[str, str]) -> "ShardExport":
        """Read which content hashes the shards at the URL already hold; refuse shards of another model.
        ``paths`` maps the content hashes this pass may write to their image paths."""
        self.model_id, self.dim, self.paths = model_id, dim, paths
        if self.local:
            self.fs.makedirs(self.root, exist_ok=True)
        self.shards_ = _shard_files(self.fs, self.root)
        self.exported_: set[str] = set()
        for name in self.shards_:
            other, hashes = _read_hashes(self.fs, name)
            if other != model_id:
                raise ConfigError(f"{self.url} holds embeddings of {other}; this pass embeds with {model_id}. "
                                  "Give each model its own --shards-to URL.")
            self.exported_.update(hashes)
        self.shards_written_, self.rows_written_ = 0, 0
        log.info("exporting to %s: %d shards with %d embeddings already there", self.url, len(self.shards_),
                 len(self.exported_))
        return self

    def write(self, hashes: Sequence[str], vectors: np.ndarray) -> str | None:
        """Write the rows not exported yet as one shard; its path, or None when there was nothing new."""
        keep = [i for i, h in enumerate(hashes) if h not in self.exported_]
        if not keep:
            return None
        new = [hashes[i] for i in keep]
        digest = hashlib.blake2b("\n".join([self.model_id, *new]).encode(), digest_size=8).hexdigest()
        path = f"{self.root}/{SHARD_PREFIX}{digest}{SHARD_SUFFIX}"
        if path not in self.shards_:
            self._put(path, self._parquet(new, np.asarray(vectors)[keep]))
            self.shards_.add(path)
            self.shards_written_ += 1
            self.rows_written_ += len(new)
        self.exported_.update(new)
        return path

    def fill(self, workspace: "Workspace") -> int:
        """Export the embeddings of ``paths`` that the workspace holds and the shards do not (embedded before
        this export began), ``FILL_ROWS`` to a shard. Returns how many rows it wrote."""
        stored = workspace.embedded_hashes(self.model_id)
        missing = [h for h in self.paths if h in stored and h not in self.exported_]
        before = self.rows_written_
        for start in range(0, len(missing), FILL_ROWS):
            chunk = missing[start:start + FILL_ROWS]
            self.write(chunk, workspace.load_embeddings(self.model_id, chunk))
        if missing:
            log.info("exported %d embeddings the workspace already held to %s", len(missing), self.url)
        return self.rows_written_ - before

    def summary(self) -> dict[str, Any]:
        """Where the shards are and what this pass added: for the command's report."""
        return {"url": self.url, "shards": len(self.shards_), "rows": len(self.exported_),
                "shards_written": self.shards_written_, "rows_written": self.rows_written_}

    def _parquet(self, hashes: list[str], vectors: np.ndarray) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .workspace import VECTOR_DTYPE

        # The values the workspace keeps (float16), widened to float32: DuckDB, Polars, Spark and pandas all
        # read float32 lists, few read float16, and a reader gets exactly what Workspace.load_embeddings gives.
        values = np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE).astype(np.float32).reshape(-1)
        table = pa.table({"content_hash": pa.array(hashes, pa.string()),
                          "path": pa.array([self.paths.get(h, "") for h in hashes], pa.string()),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), self.dim)})
        table = table.replace_schema_metadata({_MODEL_KEY: self.model_id.encode(), _DIM_KEY: str(self.dim).encode()})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()

    def _put(self, path: str, data: bytes) -> None:
        if not self.local:
            self.fs.pipe_file(path, data)  # one put: an object appears whole or not at all
            return
        # A local path is an OS path: written, synced and renamed as the workspace writes its own shards.
        from .files import atomic_write

        atomic_write(Path(path), data)


def read_exported_shards(url: str) -> ExportedVectors:
    """Read the shards ``imgcluster embed --shards-to URL`` wrote: every content hash once, with its
    image path and vector (float32), in shard-name order."""
    import pyarrow.parquet as pq

    fs, root = filesystem_of(url)
    names = sorted(_shard_files(fs, root))
    if not names:
        raise ConfigError(f"No {SHARD_PREFIX}*{SHARD_SUFFIX} shards at {url}. Write them with "
                          "`imgcluster embed PATH --shards-to URL`.")
    hashes: list[str] = []
    paths: list[str] = []
    blocks: list[np.ndarray] = []
    seen: set[str] = set()
    model_ids, dims = set(), set()
    for name in names:
        with fs.open(name, "rb") as handle:
            table = pq.read_table(handle)
        meta = table.schema.metadata or {}
        model_ids.add(meta.get(_MODEL_KEY, b"").decode())
        dim = int(meta.get(_DIM_KEY, b"0")) or table.schema.field("vector").type.list_size
        dims.add(dim)
        shard_hashes = table.column("content_hash").to_pylist()
        # Two passes writing to one URL at once may both export a content; keep its first copy.
        keep = [i for i, h in enumerate(shard_hashes) if h not in seen]
        seen.update(shard_hashes)
        vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32).reshape(-1, dim)
        shard_paths = table.column("path").to_pylist()
        hashes.extend(shard_hashes[i] for i in keep)
        paths.extend(shard_paths[i] for i in keep)
        blocks.append(vectors[keep])
    if len(model_ids) > 1 or len(dims) > 1:
        raise ConfigError(f"The shards at {url} mix models {sorted(model_ids)} or widths {sorted(dims)}; "
                          "read each model's shards from its own URL.")
    return ExportedVectors(hashes, paths, np.concatenate(blocks), model_ids.pop())


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _shard_files(fs: Any, root: str) -> set[str]:
    """The finished shard files under ``root`` (temporary ones left by a killed pass are not shards)."""
    found: Iterable[str] = fs.glob(f"{root}/{SHARD_PREFIX}*{SHARD_SUFFIX}")
    return set(found)


def _read_hashes(fs: Any, name: str) -> tuple[str, list[str]]:
    """A shard's model id and content hashes, reading one column (a few ranged reads on an object store)."""
    import pyarrow.parquet as pq

    with fs.open(name, "rb") as handle:
        shard = pq.ParquetFile(handle)
        model_id = ((shard.schema_arrow.metadata or {}).get(_MODEL_KEY) or b"").decode()
        return model_id, shard.read(columns=["content_hash"]).column(0).to_pylist()
