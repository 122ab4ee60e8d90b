"""Catalogue lookups by id for browsing (the web app): one row or one page of rows, never the whole table.

``Workspace.images`` reads every row and filters in Python, which is right for a run's pipeline and
wrong for a request that wants 60 thumbnails out of a million images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .records import ImageRecord
from .workspace import _IMAGE_COLUMNS, Workspace, _chunks


def images_by_id(ws: Workspace, ids: Sequence[int]) -> dict[int, ImageRecord]:
    """Catalogue rows of ``ids`` (any status), keyed by id; unknown ids are absent."""
    found: dict[int, ImageRecord] = {}
    for chunk in _chunks([int(i) for i in dict.fromkeys(ids)], 900):
        rows = ws._db.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id IN ({','.join('?' * len(chunk))})",
                              chunk)
        found.update({row["id"]: ImageRecord(**dict(row)) for row in rows})
    return found


def thumbnail(ws: Workspace, content_hash: str) -> bytes | None:
    """The JPEG thumbnail of one content hash, or None."""
    row = ws._db.execute("SELECT jpeg FROM thumbnails WHERE content_hash=?", (content_hash,)).fetchone()
    return None if row is None else bytes(row[0])


ASSIGNMENT_COLUMNS = np.dtype([("image_id", "i8"), ("cluster", "i8"), ("membership_probability", "f8"),
                               ("x", "f8"), ("y", "f8")])


def assignment_arrays(ws: Workspace, key: str) -> np.ndarray:
    """A run's assignments as one structured array (ASSIGNMENT_COLUMNS), by image id; without the
    ``how`` strings, which ``assignment_how`` reads for the rows a page shows. Twice as fast as
    ``Workspace.assignments`` (2.9 s instead of 5.7 s at 1M images)."""
    cursor = ws._db.cursor()
    cursor.row_factory = None
    cursor.execute("SELECT image_id, cluster, membership_probability, x, y FROM assignments WHERE run_key=? "
                   "ORDER BY image_id", (key,))
    return np.fromiter(cursor, dtype=ASSIGNMENT_COLUMNS)


def assignment_how(ws: Workspace, key: str, image_ids: Sequence[int]) -> dict[int, str]:
    """How each of ``image_ids`` got its cluster in run ``key`` (fit, filed, attached, moved …)."""
    found: dict[int, str] = {}
    for chunk in _chunks([int(i) for i in dict.fromkeys(image_ids)], 900):
        rows = ws._db.execute(f"SELECT image_id, how FROM assignments WHERE run_key=? AND image_id IN "
                              f"({','.join('?' * len(chunk))})", (key, *chunk))
        found.update({row[0]: row[1] for row in rows})
    return found
