"""Data derived from the catalogue and kept for search and duplicates: perceptual hashes (a table)
and one vector index per model (files under ``index/<model>/``). Part of ``Workspace``.

An index folder holds ``index.faiss`` (the index as built), ``rows.npy`` (the content hash of each
of its rows), ``added.npy`` (content hashes embedded since, whose vectors are read back from the
shards and added on load: an update writes a few bytes, not the index again) and ``index.json``
(the parameters and row counts, written last: files that disagree with it are ignored).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write, chunks, json_default, model_dirname, npy_bytes
from .records import ImageRecord
from .schema import IMAGE_COLUMNS


class DerivedData:
    """Perceptual hashes and vector index files; mixed into ``Workspace`` (which sets ``path`` and ``_db``)."""

    path: Path
    _db: sqlite3.Connection

    # -- models ------------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Models with embeddings here: model_id, name, dim, info (as ``describe()`` gave it) and
        ``embeddings`` (how many contents they embedded), most embeddings first."""
        rows = self._db.execute(
            "SELECT m.model_id, m.name, m.dim, m.info, COUNT(e.content_hash) FROM models m "
            "LEFT JOIN embeddings e ON e.model_id = m.model_id GROUP BY m.model_id "
            "ORDER BY COUNT(e.content_hash) DESC, m.model_id").fetchall()
        return [{"model_id": r[0], "name": r[1], "dim": r[2], "info": json.loads(r[3]), "embeddings": r[4]}
                for r in rows]

    def embedding_count(self, model_id: str) -> int:
        """How many contents have an embedding from ``model_id``."""
        return int(self._db.execute("SELECT COUNT(*) FROM embeddings WHERE model_id=?", (model_id,)).fetchone()[0])

    # -- files by content --------------------------------------------------------------------------

    def images_by_hash(self, hashes: Iterable[str], status: str | None = "ok") -> dict[str, list[ImageRecord]]:
        """Catalogue rows with each content hash (byte-identical files share one), oldest id first."""

        found: dict[str, list[ImageRecord]] = {}
        for chunk in chunks(list(dict.fromkeys(hashes)), 900):
            rows = self._db.execute(
                f"SELECT {IMAGE_COLUMNS} FROM images WHERE content_hash IN ({','.join('?' * len(chunk))})"
                f"{' AND status = ?' if status else ''} ORDER BY id", (*chunk, *([status] if status else [])))
            for row in rows:
                found.setdefault(row["content_hash"], []).append(ImageRecord(**dict(row)))
        return found

    # -- perceptual hashes -------------------------------------------------------------------------

    def perceptual_hashes(self, algorithm: str, hashes: Iterable[str]) -> dict[str, str]:
        """Stored perceptual hashes (hex) of ``algorithm`` by content hash, for those computed."""

        found: dict[str, str] = {}
        for chunk in chunks(list(dict.fromkeys(hashes)), 900):
            rows = self._db.execute(
                f"SELECT content_hash, value FROM perceptual_hashes WHERE algorithm=? "
                f"AND content_hash IN ({','.join('?' * len(chunk))})", (algorithm, *chunk))
            found.update({r[0]: r[1] for r in rows})
        return found

    def save_perceptual_hashes(self, algorithm: str, values: dict[str, str]) -> None:
        """Keep perceptual hashes (hex) by content hash, in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO perceptual_hashes(content_hash, algorithm, value) VALUES(?,?,?)",
                [(h, algorithm, v) for h, v in values.items()])

    # -- vector indexes ----------------------------------------------------------------------------

    def index_dir(self, model_id: str) -> Path:

        return self.path / "index" / model_dirname(model_id)

    def write_vector_index(self, model_id: str, index: bytes, rows: Sequence[str], params: dict[str, Any]) -> Path:
        """Replace the model's index: its bytes, the content hash of each row, and its parameters."""

        folder = self.index_dir(model_id)
        (folder / "index.json").unlink(missing_ok=True)  # a crash between the files leaves no index, not a wrong one
        atomic_write(folder / "index.faiss", index)
        atomic_write(folder / "rows.npy", npy_bytes(np.asarray(rows, dtype="S32")))
        atomic_write(folder / "added.npy", npy_bytes(np.zeros(0, dtype="S32")))
        params = dict(params, model_id=model_id, rows=len(rows), added=0)
        atomic_write(folder / "index.json", json.dumps(params, indent=2, default=json_default).encode())
        return folder

    def add_to_vector_index(self, model_id: str, hashes: Sequence[str]) -> None:
        """Record contents embedded since the index was written (all its added ones, not just the new)."""

        folder = self.index_dir(model_id)
        params = json.loads((folder / "index.json").read_text())
        atomic_write(folder / "added.npy", npy_bytes(np.asarray(hashes, dtype="S32")))
        params["added"] = len(hashes)
        atomic_write(folder / "index.json", json.dumps(params, indent=2).encode())

    def read_vector_index(self, model_id: str) -> tuple[bytes, list[str], list[str], dict[str, Any]] | None:
        """(index bytes, row hashes, hashes added since, parameters), or None when there is no
        usable index for the model (never built, or its files disagree)."""
        folder = self.index_dir(model_id)
        try:
            params = json.loads((folder / "index.json").read_text())
            rows = [h.decode() for h in np.load(folder / "rows.npy", allow_pickle=False)]
            added = [h.decode() for h in np.load(folder / "added.npy", allow_pickle=False)]
            index = (folder / "index.faiss").read_bytes()
        except (OSError, ValueError):
            return None
        if len(rows) != params.get("rows") or len(added) != params.get("added"):
            return None
        return index, rows, added, params
