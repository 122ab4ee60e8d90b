"""Embeddings kept as row-stacked ``.npy`` shards, read through memory maps only as far as asked.

The clustering path takes ``ShardedVectors`` wherever it takes an (n, d) array of embeddings: it
reads a sample to fit on and then the other rows a batch at a time, so a collection never needs
n x d float32 in memory (1M x 512 would be 2 GiB, before any copy).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class ShardedVectors:
    """Rows (n, d) stored across ``.npy`` shard files, in the order given; any float dtype on disk
    (float16 halves the files and the reads), float32 when read.

    ``vectors[rows]`` (int array in any order, bool mask, slice or int) reads only those rows. A
    shard is memory-mapped only while it is being read, so the pages read are not kept in the
    process's resident memory. ``np.asarray(vectors)`` reads everything, and logs that it does.
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, paths: Sequence[str | os.PathLike[str]]):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("ShardedVectors needs at least one shard file.")
        rows, widths, stored = [], set(), set()
        for path in self.paths:
            data = _open(path)
            if data.ndim != 2:
                raise ValueError(f"{path} holds an array of shape {data.shape}; a shard must be 2-D (rows, d).")
            rows.append(data.shape[0])
            widths.add(data.shape[1])
            stored.add(data.dtype.name)
            del data
        if len(widths) > 1:
            raise ValueError(f"The shards have rows of different widths {sorted(widths)}; they must share one d.")
        self.offsets_ = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self.shape = (int(self.offsets_[-1]), widths.pop())
        self.stored_dtype = ", ".join(sorted(stored))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], pattern: str = "*.npy") -> "ShardedVectors":
        """The shards in ``folder`` matching ``pattern``, in file-name order."""
        paths = sorted(Path(folder).glob(pattern))
        if not paths:
            raise FileNotFoundError(f"No {pattern} shard files in {folder}.")
        return cls(paths)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"ShardedVectors({len(self.paths)} shards, shape={self.shape}, "
                f"stored as {self.stored_dtype})")

    def __getitem__(self, key: Any) -> np.ndarray:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            if not -n <= key < n:
                raise IndexError(f"row {key} is out of range for {n} rows")
            return self._read(np.array([key % n]))[0]
        if isinstance(key, slice):
            return self._read(np.arange(*key.indices(n)))
        rows = np.asarray(key)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise IndexError(f"a boolean mask must have shape ({n},); got {rows.shape}")
            rows = np.flatnonzero(rows)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise IndexError("ShardedVectors takes an int, a slice, or a 1-D array of rows or a boolean mask.")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"rows out of range for {n} rows")
        return self._read(np.where(rows < 0, rows + n, rows))

    def batches(self, size: int = 10_000) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 rows) of at most ``size`` rows each, in row order."""
        for start in range(0, len(self), size):
            yield start, self[start:start + size]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        log.info("reading all %d x %d rows of %s into memory (%.0f MiB as float32)", *self.shape,
                 self, self.shape[0] * self.shape[1] * 4 / 2**20)
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        shard_of = np.searchsorted(self.offsets_, rows, side="right") - 1
        for shard in np.unique(shard_of):
            mine = np.flatnonzero(shard_of == shard)
            local = rows[mine] - self.offsets_[shard]
            data = _open(self.paths[shard])
            if len(local) and local[-1] - local[0] + 1 == len(local) and (np.diff(local) == 1).all():
                out[mine] = data[local[0]:local[-1] + 1]  # a run of rows: one sequential read
            else:
                out[mine] = data[local]
            del data  # unmapped here: its pages leave this process's resident set
        return out


def _open(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)
