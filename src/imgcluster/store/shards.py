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

    ``stored_rows`` (optional, one int per row of the view) picks and orders the rows: row ``i`` of
    the view is row ``stored_rows[i]`` of the shards stacked in the order given. The workspace
    uses it to hand out a run's images in catalogue order from shards written in embedding order.
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, paths: Sequence[str | os.PathLike[str]], stored_rows: np.ndarray | None = None):
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
        self.stored_rows_ = None if stored_rows is None else np.asarray(stored_rows, dtype=np.int64)
        if self.stored_rows_ is not None and len(self.stored_rows_) and (
                self.stored_rows_.min() < 0 or self.stored_rows_.max() >= self.offsets_[-1]):
            raise IndexError(f"stored_rows points outside the {self.offsets_[-1]} rows of the shards")
        n = int(self.offsets_[-1]) if self.stored_rows_ is None else len(self.stored_rows_)
        self.shape = (n, widths.pop())
        self.stored_dtype = ", ".join(sorted(stored))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], pattern: str = "*.npy") -> "ShardedVectors":
        """The shards in ``folder`` matching ``pattern``, in file-name order."""
        paths = sorted(Path(folder).glob(pattern))
        if not paths:
            raise FileNotFoundError(f"No {pattern} shard files in {folder}.")
        return cls(paths)

    @classmethod
    def picking(cls, paths: Sequence[str | os.PathLike[str]], shard: np.ndarray,
                row_in_shard: np.ndarray) -> "ShardedVectors":
        """A view whose row ``i`` is row ``row_in_shard[i]`` of shard file ``paths[shard[i]]``."""
        view = cls(paths)
        stacked = view.offsets_[np.asarray(shard, dtype=np.int64)] + np.asarray(row_in_shard, dtype=np.int64)
        if len(stacked) and (stacked.max() >= view.offsets_[-1] or
                             (np.asarray(row_in_shard) >= np.diff(view.offsets_)[shard]).any()):
            raise IndexError("a row asked for is beyond the end of its shard")
        return cls._with_rows(view, stacked)

    def subset(self, rows: np.ndarray) -> "ShardedVectors":
        """A view of only ``rows`` (in that order), still read from the shards when indexed."""
        rows = np.arange(len(self))[rows]  # bounds and negative rows checked as numpy does
        stacked = rows if self.stored_rows_ is None else self.stored_rows_[rows]
        return self._with_rows(self, stacked.astype(np.int64))

    @classmethod
    def _with_rows(cls, view: "ShardedVectors", stacked: np.ndarray) -> "ShardedVectors":
        picked = object.__new__(cls)
        picked.__dict__.update(view.__dict__)
        picked.stored_rows_, picked.shape = stacked, (len(stacked), view.shape[1])
        return picked

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
        if self.stored_rows_ is not None:
            rows = self.stored_rows_[rows]
        shard_of = np.searchsorted(self.offsets_, rows, side="right") - 1
        # Grouped by shard through one sort: a workspace can hold tens of thousands of small shards.
        order = np.argsort(shard_of, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(shard_of[order]) != 0]) if len(rows) else np.zeros(0, int)
        for begin, end in zip(starts, np.r_[starts[1:], len(rows)].astype(int)):
            mine = order[begin:end]
            shard = shard_of[mine[0]]
            local = rows[mine] - self.offsets_[shard]
            data = _open(self.paths[shard])
            if local[-1] - local[0] + 1 == len(local) and (np.diff(local) == 1).all():
                out[mine] = data[local[0]:local[-1] + 1]  # a run of rows: one sequential read
            else:
                out[mine] = data[local]
            del data  # unmapped here: its pages leave this process's resident set
        return out


def _open(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def shard_problem(path: Path, *, rows: int | None = None, read_values: bool = False) -> str | None:
    """What is wrong with the shard file ``path``, as the end of a sentence ("is missing"), or None.

    Checks that it opens as a 2-D float16/float32 array without pickled data and, when given, that it
    holds at least ``rows`` rows; ``read_values`` also reads every value (finite?): a full read."""
    if not path.is_file():
        return "is missing"
    try:
        data = _open(path)
    except (OSError, ValueError, EOFError) as error:
        return f"cannot be read as an array ({error})"
    try:
        if data.ndim != 2 or data.dtype not in (np.float16, np.float32):
            return f"holds a {data.dtype} array of shape {data.shape}, not rows of float16/float32"
        if rows is not None and data.shape[0] < rows:
            return f"holds {data.shape[0]} rows where the catalogue points at row {rows - 1}"
        if read_values:
            for start in range(0, data.shape[0], 65536):
                if not np.isfinite(data[start:start + 65536]).all():
                    return "holds values that are not finite (NaN or infinity)"
        return None
    finally:
        del data
