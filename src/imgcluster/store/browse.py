"""Catalogue lookups by id for browsing (the web app): one row or one page of rows, never the whole table.

``Workspace.images`` reads every row and filters in Python, which is right for a run's pipeline and
wrong for a request that wants 60 thumbnails out of a million images.
"""

from __future__ import annotations

from collections.abc import Sequence

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
