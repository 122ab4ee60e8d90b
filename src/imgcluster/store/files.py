"""File helpers every store module shares: atomic writes, safe folder names, JSON and .npy bytes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..neighbours import write_index


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` written to a temporary file in ``path``'s folder, synced, then renamed over ``path``."""
    atomic_file(path, lambda handle, _: handle.write(data))


def atomic_write_index(path: Path, index: Any) -> None:
    """``neighbours.write_index`` into a temporary file renamed into place: never a half-written index."""
    atomic_file(path, lambda _, tmp: write_index(index, tmp))


def atomic_file(path: Path, write: Any) -> None:
    """Call ``write(handle, temporary path)`` to fill a temporary file beside ``path``, sync it and
    rename it into place; on any failure the temporary file is removed and ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "r+b") as handle:
            write(handle, tmp)
            handle.flush()
            os.fsync(handle.fileno())  # the same inode a writer that opened the path by name wrote to
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def link_or_copy(source: Path, dest: Path) -> None:
    """``source`` hard-linked (else copied) to ``dest`` through a partial name: never half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, partial)
    os.replace(partial, dest)


def model_dirname(model_id: str) -> str:
    """The folder name of a model's shards and index."""
    # Model ids hold slashes and colons; the folder name must be safe and still recognisable.
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_id)[:60]
    return f"{safe}-{hashlib.blake2b(model_id.encode(), digest_size=4).hexdigest()}"


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of an .npy file (no pickle)."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in slices of at most ``size`` (SQLite takes a bounded number of parameters)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def json_default(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself: numpy scalars and arrays, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
