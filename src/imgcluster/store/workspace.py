"""A workspace folder: catalogue.db, vectors/<model>/*.npy shards, runs/<key>/ outputs, and a lock.

Layout::

    WORKSPACE/
      catalogue.db            SQLite (WAL): images, embeddings index, thumbnails, runs, assignments,
                              evaluations, stability measurements
      vectors/<model>/        float16 .npy shards, one per committed batch (older workspaces also
                              hold float32 ones; both are read, as float32)
      runs/<key>/             clusters.csv, clusters.parquet, report.html, run.json, consensus.csv
      cache/<kind>/           derived arrays worth keeping (text embeddings of a naming vocabulary)
      index/<model>/          a vector index of the model's embeddings (see derived.py)
      lock                    held by the process that writes

Writes are atomic per batch: a shard file is renamed into place, then its rows are committed in one
transaction, so a killed process loses at most the batch in flight (an orphan shard is harmless).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, RunNotFound, WorkspaceBusy, WorkspaceDamaged, WorkspaceNotFound, WorkspaceTooNew
from .derived import DerivedData
from .records import Assignments, ClusterName, ImageRecord, RunRecord, ScannedFile, upgrade_results
from .files import atomic_write, atomic_write_index, chunks, json_default, link_or_copy, model_dirname, npy_bytes
from .schema import ADDED_COLUMNS, IMAGE_COLUMNS, READS_AS_IS_FROM, SCHEMA, SCHEMA_VERSION
from .shards import ShardedVectors, shard_problem

WORKSPACE_DIRNAME = ".imgcluster"
ASSIGNMENTS_FILE = "assignments.npz"  # in runs/<key>/, since schema version 7
# Embeddings are L2-normalised, so float16 keeps cosine similarities to ~1e-4 while halving the
# shards and every read of them (a million 512-d vectors: 1 GB on disk instead of 2).
VECTOR_DTYPE = np.float16
SIDECAR_SUFFIX = ".json"  # vectors/<model>/<shard>.json: the shard's model, content hashes and digest


def shard_digest(data: bytes) -> str:
    """The digest a shard's sidecar records of its file's bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()

def locate_workspace(path: str | os.PathLike[str] | None = None, workspace: str | os.PathLike[str] | None = None,
                     *, reading: bool = True) -> Path:
    """The one way a command finds its workspace folder: ``workspace`` when given, else the image
    folder ``path``'s ``.imgcluster`` (``./.imgcluster`` when neither). When ``reading``, a ``path``
    that does not exist is a ConfigError: its parent's workspace would be found instead, and a typo
    must not pass unnoticed."""
    if workspace is not None:
        return Path(workspace)
    if reading and path is not None and not Path(path).expanduser().exists():
        raise ConfigError(f"{path} does not exist. Give the image folder (its workspace is FOLDER/.imgcluster), "
                          "or the workspace folder with --workspace.")
    return default_workspace(path if path is not None else ".")


def default_workspace(root: str | os.PathLike[str]) -> Path:
    """The workspace used for a folder when none is given: ``ROOT/.imgcluster``."""
    root = Path(root).expanduser().resolve()
    return (root if root.is_dir() else root.parent) / WORKSPACE_DIRNAME


class Workspace(DerivedData):
    """All persistence of one workspace. Open with ``Workspace.open(path)``. Perceptual hashes and
    vector indexes are in ``DerivedData`` (derived.py)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, upgrade_from: int | None = None):
        self.path = path
        self._db = connection
        self._lock_handle: Any = None
        # An older schema read as it is (see schema.READS_AS_IS_FROM), upgraded by the first writer.
        self._upgrade_from = upgrade_from

    # -- opening and locking -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True, fresh: bool = False) -> "Workspace":
        """Open the workspace folder at ``path``, creating it when ``create`` (else WorkspaceNotFound:
        readers never create a workspace). A damaged catalogue raises WorkspaceDamaged and one made
        by a newer imgcluster WorkspaceTooNew; neither is ever written to. A catalogue missing or
        without tables beside vectors or runs is damage too, unless ``fresh`` (doctor's repair starting
        a new one on purpose)."""
        path = Path(path).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"The workspace {path} is a file, not a folder. Give a folder (a new one is created), "
                              "e.g. --workspace PATH/.imgcluster.")
        catalogue = path / "catalogue.db"
        existed = catalogue.is_file()
        if not create and not existed:
            raise WorkspaceNotFound(f"No imgcluster workspace at {path}. Run `imgcluster cluster FOLDER` first, "
                                    "or pass the --workspace that holds one.")
        problem = catalogue_problem(path)
        if problem is not None:
            raise WorkspaceDamaged(damage_message(path, problem))
        if not create and catalogue.stat().st_size == 0:
            raise WorkspaceNotFound(f"No imgcluster workspace at {path} (its catalogue is empty). Run "
                                    "`imgcluster cluster FOLDER` first.")
        try:
            path.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(catalogue, timeout=30, check_same_thread=False, factory=_Catalogue)
        except (OSError, sqlite3.OperationalError) as error:
            raise _unusable_folder(path, error) from None
        db.workspace_path = path
        db.row_factory = sqlite3.Row
        try:
            try:
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as error:
                if "locked" in str(error) or "busy" in str(error):
                    raise
                raise _unusable_folder(path, error) from None
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            version = _schema_version(db)
            # Opening an up-to-date workspace writes nothing: a reader (`runs list`, the web app) must not
            # wait for a writer's transaction (save_run of a large run holds one for seconds).
            if version == str(SCHEMA_VERSION):
                return cls(path, db)
            _check_version(path, version)
            if version is not None and int(version) >= READS_AS_IS_FROM:
                # A reader (`runs list`, `runs show`, the web app) writes nothing: the runs' rows read
                # in either format, and the first writer (``lock``, ``save_run``) upgrades them.
                return cls(path, db, upgrade_from=int(version))
            if version is None and not fresh and _holds_data(path):
                # As a 0-byte catalogue: starting afresh would silently forget every run and vector.
                state = "holds no tables" if existed else "is missing"
                raise WorkspaceDamaged(damage_message(path, f"its catalogue {catalogue} {state} although the "
                                                            "workspace holds vectors or runs"))
            if version is None and not create:
                raise WorkspaceNotFound(f"No imgcluster workspace at {path} (its catalogue holds no tables). "
                                        "Run `imgcluster cluster FOLDER` first.")
            _upgrade(db, version)
        except BaseException:
            db.close()
            raise
        return cls(path, db)

    def close(self) -> None:
        self.unlock()
        self._db.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self) -> None:
        """Take the single-writer lock, or raise WorkspaceBusy if another process holds it."""
        if self._lock_handle is not None:
            return
        handle = open(self.path / "lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise WorkspaceBusy(
                f"The workspace {self.path} is being written by {holder}. Wait for it to finish, "
                "or pass another --workspace.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"imgcluster pid {os.getpid()}")
        handle.flush()
        self._lock_handle = handle
        self._finish_upgrade()

    def _finish_upgrade(self) -> None:
        """Write the schema upgrade an older workspace opened to read was spared, once, before the
        first write that needs it (another writer may have done it since: then nothing)."""
        if self._upgrade_from is None:
            return
        version = _schema_version(self._db)
        if version != str(SCHEMA_VERSION):
            _check_version(self.path, version)
            _upgrade(self._db, version)
        self._upgrade_from = None

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def integrity_ok(self) -> bool:
        """True when SQLite's integrity check passes."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # -- catalogue ---------------------------------------------------------------------------------

    def known_files(self, under: str) -> dict[str, ImageRecord]:
        """Catalogue rows whose path lies under the folder ``under`` (absolute), keyed by path."""
        prefix = under.rstrip(os.sep) + os.sep
        cursor = self._db.cursor()
        cursor.row_factory = None  # plain tuples in IMAGE_COLUMNS order, as in images()
        cursor.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE substr(path, 1, ?) = ? OR path = ?",
                       (len(prefix), prefix, under))
        return {record.path: record for record in (ImageRecord(*row) for row in cursor)}

    def save_scanned(self, files: Sequence[ScannedFile]) -> None:
        """Insert or update catalogue rows for scanned files, in one transaction."""
        with self._db:
            self._upsert_scanned(files)

    def _upsert_scanned(self, files: Sequence[ScannedFile]) -> None:
        now = time.time()
        self._db.executemany(
            """INSERT INTO images(path, size, mtime_ns, content_hash, format, width, height, status, skip_stage,
                                  skip_reason, source_path, timestamp, shot, video_params, scanned_at)
               VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,
                 content_hash=excluded.content_hash, format=excluded.format, width=excluded.width,
                 height=excluded.height, status=excluded.status, skip_stage=excluded.skip_stage,
                 skip_reason=excluded.skip_reason, source_path=excluded.source_path,
                 timestamp=excluded.timestamp, shot=excluded.shot, video_params=excluded.video_params,
                 scanned_at=excluded.scanned_at""",
            [(f.path, f.size, f.mtime_ns, f.content_hash, f.format, f.width, f.height, f.status, f.skip_stage,
              f.skip_reason, f.source_path, f.timestamp, f.shot, f.video_params, now) for f in files])

    def save_video(self, video: ScannedFile, items: Sequence[ScannedFile], jpegs: dict[str, bytes]) -> None:
        """Replace what the catalogue holds for one video file in one transaction: its row, its key-frame
        rows (and a skipped row for a damaged tail), the key-frames' JPEG bytes by content hash. Rows of
        its earlier key-frames that are not among ``items`` are marked missing (runs may still show them)."""
        with self._db:
            self._upsert_scanned([video, *items])
            keep = {f.path for f in items}
            stale = [r[0] for r in self._db.execute(
                "SELECT path FROM images WHERE source_path=? AND status != 'missing'", (video.path,))
                if r[0] not in keep]
            self._db.executemany("UPDATE images SET status='missing' WHERE path=?", [(p,) for p in stale])
            self._db.executemany("INSERT OR IGNORE INTO frames(content_hash, jpeg) VALUES(?,?)", list(jpegs.items()))

    def video_items(self, videos: Sequence[str]) -> list[ImageRecord]:
        """The key-frame rows (and skipped damaged tails) of these video files that are not missing,
        ordered by video then time."""
        found: list[ImageRecord] = []
        for chunk in chunks(list(dict.fromkeys(videos)), 900):
            rows = self._db.execute(
                f"SELECT {IMAGE_COLUMNS} FROM images WHERE status != 'missing' AND source_path IN "
                f"({','.join('?' * len(chunk))})", chunk)
            found.extend(ImageRecord(**dict(row)) for row in rows)
        return sorted(found, key=lambda r: (r.source_path or "", r.timestamp or 0.0, r.path))

    def frame_jpeg(self, content_hash: str) -> bytes | None:
        """The stored JPEG of a video key-frame (see ``save_video``), or None."""
        row = self._db.execute("SELECT jpeg FROM frames WHERE content_hash=?", (content_hash,)).fetchone()
        return None if row is None else bytes(row[0])

    def mark_missing(self, paths: Iterable[str]) -> None:
        """Flag files that were catalogued before but are gone now (their rows are kept)."""
        with self._db:
            self._db.executemany("UPDATE images SET status='missing' WHERE path=?", [(p,) for p in paths])

    def images(self, paths: Sequence[str] | None = None, *, ids: Sequence[int] | None = None,
               status: str | None = None) -> list[ImageRecord]:
        """Catalogue rows, optionally restricted to given paths or ids and a status; ordered by path."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        cursor = self._db.cursor()
        cursor.row_factory = None  # plain tuples in IMAGE_COLUMNS order: 4x faster than named rows
        cursor.execute(f"SELECT {IMAGE_COLUMNS} FROM images {'WHERE ' + ' AND '.join(where) if where else ''} "
                       "ORDER BY path", args)
        records = [ImageRecord(*row) for row in cursor]
        if paths is not None:
            wanted = set(paths)
            records = [r for r in records if r.path in wanted]
        if ids is not None:
            wanted_ids = set(int(i) for i in ids)
            records = [r for r in records if r.id in wanted_ids]
        return records

    def mark_undecodable(self, reasons: dict[str, str]) -> None:
        """Skip every file whose content hash failed to decode, with the decoder's reason."""
        with self._db:
            self._record_undecodable(reasons)

    def _record_undecodable(self, reasons: dict[str, str]) -> None:
        self._db.executemany(
            "UPDATE images SET status='skipped', skip_stage='decode', skip_reason=? WHERE content_hash=?",
            [(reason, content_hash) for content_hash, reason in reasons.items()])

    # -- models and embeddings ---------------------------------------------------------------------

    def register_model(self, model_id: str, name: str, dim: int, info: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO models(model_id, name, dim, info) VALUES(?,?,?,?) "
                "ON CONFLICT(model_id) DO UPDATE SET name=excluded.name, dim=excluded.dim, info=excluded.info",
                (model_id, name, dim, json.dumps(info, sort_keys=True)))

    def embedded_hashes(self, model_id: str) -> set[str]:
        """Content hashes that already have an embedding from ``model_id``."""
        rows = self._db.execute("SELECT content_hash FROM embeddings WHERE model_id=?", (model_id,))
        return {row[0] for row in rows}

    def save_batch(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray,
                   thumbnails: dict[str, tuple[bytes, int, int]] | None = None,
                   undecodable: dict[str, str] | None = None, changed: dict[str, str] | None = None,
                   changed_reason: str = "the file changed while it was being read") -> None:
        """Commit one embedding batch: vectors (n, d), thumbnails and decode failures, atomically.

        ``changed`` (content hash → the path that was read for it): files found rewritten since the
        scan. Nothing is stored under those hashes, so the changed file (``changed_reason``) and the
        other files with the same content (they got no vector this time) are skipped now as
        scan-stage skips, which the next scan always examines again."""
        shard_name = None
        if len(hashes):
            if vectors.shape[0] != len(hashes):
                raise ValueError(f"{len(hashes)} hashes but {vectors.shape[0]} vectors")
            shard_name = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}.npy"
            buffer = npy_bytes(np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE))
            shard = self.path / "vectors" / model_dirname(model_id) / shard_name
            # The sidecar first: it lets `doctor` check the shard's bytes and re-index its rows if the
            # catalogue is lost (an orphan sidecar, like an orphan shard, is harmless).
            atomic_write(shard.with_suffix(SIDECAR_SUFFIX), json.dumps(
                {"model_id": model_id, "rows": len(hashes), "blake2b": shard_digest(buffer),
                 "content_hashes": list(hashes)}).encode())
            atomic_write(shard, buffer)
        with self._db:
            if shard_name is not None:
                self._db.executemany(
                    "INSERT OR REPLACE INTO embeddings(content_hash, model_id, shard, row) VALUES(?,?,?,?)",
                    [(h, model_id, shard_name, i) for i, h in enumerate(hashes)])
            if thumbnails:
                self._db.executemany(
                    "INSERT OR REPLACE INTO thumbnails(content_hash, jpeg, width, height) VALUES(?,?,?,?)",
                    [(h, jpeg, w, ht) for h, (jpeg, w, ht) in thumbnails.items()])
            if undecodable:
                self._record_undecodable(undecodable)
            if changed:
                self._db.executemany(
                    "UPDATE images SET status='skipped', skip_stage='scan', skip_reason=? WHERE content_hash=? "
                    "AND path<>?",
                    [(f"another file with the same content ({path}) changed while it was being read, so none got "
                      "a vector this time; run the command again to include it", content_hash, path)
                     for content_hash, path in changed.items()])
                self._db.executemany(
                    "UPDATE images SET status='skipped', skip_stage='scan', skip_reason=? WHERE path=?",
                    [(changed_reason, path) for path in changed.values()])

    def load_embeddings(self, model_id: str, hashes: Sequence[str]) -> np.ndarray:
        """Embeddings (len(hashes), d) float32 in the order of ``hashes``; all must be present."""
        if not len(hashes):
            return np.empty((0, 0), dtype=np.float32)
        return self.embeddings_view(model_id, hashes)[:]

    def embeddings_view(self, model_id: str, hashes: Sequence[str]) -> ShardedVectors:
        """The embeddings of ``hashes`` (in that order; all must be present) as a view on the shard
        files that reads rows only when asked: a million images' vectors never need to be in memory
        at once. ``np.asarray(view)`` or ``view[:]`` reads them all."""
        if not len(hashes):
            raise KeyError("no images asked for")
        shard_names: dict[str, int] = {}
        shard_of = np.empty(len(hashes), dtype=np.int64)
        row_of = np.empty(len(hashes), dtype=np.int64)
        missing = 0
        for start in range(0, len(hashes), 900):  # one query per 900 hashes; memory stays per chunk
            chunk = list(hashes[start:start + 900])
            unique = list(dict.fromkeys(chunk))
            found = {r[0]: (r[1], r[2]) for r in self._db.execute(
                f"SELECT content_hash, shard, row FROM embeddings WHERE model_id=? "
                f"AND content_hash IN ({','.join('?' * len(unique))})", (model_id, *unique))}
            for offset, h in enumerate(chunk):
                if h not in found:
                    missing += 1
                    continue
                shard, row = found[h]
                shard_of[start + offset] = shard_names.setdefault(shard, len(shard_names))
                row_of[start + offset] = row
        if missing:
            raise KeyError(f"{missing} images have no {model_id} embedding yet; run embedding first.")
        folder = self.path / "vectors" / model_dirname(model_id)
        paths = [folder / name for name in shard_names]
        try:
            return ShardedVectors.picking(paths, shard_of, row_of)
        except (OSError, ValueError, IndexError) as error:
            bad = next((p for p in paths if shard_problem(p) is not None), None)
            what = (f"the vector shard {bad} {shard_problem(bad)}" if bad is not None
                    else f"the vector shards of {model_id} cannot be read ({error})")
            raise WorkspaceDamaged(damage_message(self.path, what)) from None

    def embedding_rows(self, model_id: str) -> list[tuple[str, str, int]]:
        """Every (content hash, shard file name, row) stored for ``model_id``."""
        rows = self._db.execute("SELECT content_hash, shard, row FROM embeddings WHERE model_id=?", (model_id,))
        return [(r[0], r[1], int(r[2])) for r in rows]

    def unreferenced_shards(self, model_id: str) -> list[Path]:
        """Shard files of ``model_id`` that no embedding row points to. A process killed after a
        shard is renamed into place but before its rows commit leaves one; it is never read, and may
        be deleted while no other process is embedding."""
        folder = self.path / "vectors" / model_dirname(model_id)
        used = {r[0] for r in self._db.execute("SELECT DISTINCT shard FROM embeddings WHERE model_id=?", (model_id,))}
        return sorted(p for p in folder.glob("*.npy") if p.name not in used) if folder.is_dir() else []

    def thumbnail_hashes(self, hashes: Iterable[str]) -> set[str]:
        """Which of ``hashes`` already have a thumbnail (without reading the images)."""
        found: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(hashes)), 900):
            rows = self._db.execute(
                f"SELECT content_hash FROM thumbnails WHERE content_hash IN ({','.join('?' * len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    def thumbnails(self, hashes: Iterable[str]) -> dict[str, bytes]:
        """JPEG thumbnails by content hash (those that exist)."""
        result: dict[str, bytes] = {}
        for chunk in chunks(list(dict.fromkeys(hashes)), 900):
            rows = self._db.execute(
                f"SELECT content_hash, jpeg FROM thumbnails WHERE content_hash IN ({','.join('?' * len(chunk))})",
                chunk)
            result.update({r[0]: bytes(r[1]) for r in rows})
        return result

    # -- runs --------------------------------------------------------------------------------------

    def run_dir(self, key: str) -> Path:
        return self.path / "runs" / key

    def discard_unsaved_run(self, key: str) -> bool:
        """Remove ``runs/<key>/`` when no run row has that key: what a process killed while writing
        the run left behind. Call with the lock held, before writing a new run under ``key``; True
        when a folder was removed."""
        folder = self.run_dir(key)
        if not folder.is_dir() or self._db.execute("SELECT 1 FROM runs WHERE key=?", (key,)).fetchone():
            return False
        if folder.resolve().parent != (self.path / "runs").resolve():
            return False  # never remove anything outside runs/
        shutil.rmtree(folder)
        return True

    def write_run_file(self, key: str, name: str, data: bytes | str) -> Path:
        """Write one output file of a run atomically and return its path."""
        target = self.run_dir(key) / name
        atomic_write(target, data.encode() if isinstance(data, str) else data)
        return target

    def write_assignment_tables(self, key: str, table: dict[str, Sequence[Any]]) -> list[Path]:
        """Write ``clusters.csv`` and ``clusters.parquet`` for a run from columns of equal length."""
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        arrow = pa.table(table)
        written = []
        for name, writer in (("clusters.csv", pacsv.write_csv), ("clusters.parquet", pq.write_table)):
            buffer = pa.BufferOutputStream()
            writer(arrow, buffer)
            written.append(self.write_run_file(key, name, buffer.getvalue().to_pybytes()))
        return written

    def write_predictor(self, key: str, arrays: dict[str, np.ndarray], index: Any,
                        params: dict[str, Any], *, index_from: str | None = None) -> Path:
        """Persist a run's predictor: plain arrays (npz), the faiss index (an index, streamed to its
        file, or its bytes) and its parameters.

        A run derived from another (``index_from``) may share that run's index file instead of
        writing ``index``: it is hard-linked (copied where links fail), so deleting either run
        never breaks the other."""
        import io

        folder = self.run_dir(key) / "predictor"
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(folder / "arrays.npz", buffer.getvalue())
        if index_from is not None:
            link_or_copy(self.run_dir(index_from) / "predictor" / "index.faiss", folder / "index.faiss")
        elif isinstance(index, (bytes, bytearray, memoryview)):
            atomic_write(folder / "index.faiss", bytes(index))
        else:
            assert index is not None, "give the index or the run whose index to share"
            atomic_write_index(folder / "index.faiss", index)
        atomic_write(folder / "predictor.json", json.dumps(params, indent=2, default=json_default).encode())
        return folder

    def read_predictor(self, key: str) -> tuple[dict[str, np.ndarray], Path, dict[str, Any]]:
        """The arrays, the index file's path (read it, or map it: it is never rewritten in place)
        and the parameters written by ``write_predictor``."""
        folder = self.run_dir(key) / "predictor"
        if not (folder / "predictor.json").exists():
            raise RunNotFound(f"Run {key!r} has no saved predictor (it was made by an older imgcluster). "
                              "Run `imgcluster cluster` again to make one.")
        try:
            with np.load(folder / "arrays.npz", allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            params = json.loads((folder / "predictor.json").read_text())
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise WorkspaceDamaged(damage_message(self.path, f"run {key}'s predictor in {folder} cannot be read "
                                                  f"({error})")) from None
        if not (folder / "index.faiss").is_file():
            raise WorkspaceDamaged(damage_message(self.path, f"run {key}'s predictor index {folder / 'index.faiss'} "
                                                  "is missing"))
        return arrays, folder / "index.faiss", params

    def save_run(self, run: RunRecord, assignments: Assignments, names: Sequence[ClusterName] = ()) -> None:
        """Make a finished run visible: its files (``run.json``, ``assignments.npz``) first, then
        its row and first names in one transaction; until that commits the run does not exist.

        Assignments are a file of columns, not table rows: writing 100k of them takes 10 ms
        instead of half a second, and reading them back 5 ms instead of one second."""
        self._finish_upgrade()  # a run's row in the new format needs the new schema
        self.write_run_file(run.key, "run.json", json.dumps(
            {"key": run.key, "created_at": run.created_at, "root": run.root, "model_id": run.model_id,
             "model_name": run.model_name, "n_images": run.n_images, "n_clusters": run.n_clusters,
             "config": run.config, "info": run.to_stored()}, indent=2, default=json_default))
        self.write_run_file(run.key, ASSIGNMENTS_FILE, _assignment_bytes(assignments))
        with self._db:
            self._db.execute(
                "INSERT INTO runs(key, created_at, root, model_id, model_name, n_images, n_clusters, config, info) "
                "VALUES(?,?,?,?,?,?,?,?,?)",
                (run.key, run.created_at, run.root, run.model_id, run.model_name, run.n_images, run.n_clusters,
                 json.dumps(run.config, default=json_default),
                 json.dumps(run.to_stored(), default=json_default)))
            self._upsert_names(run.key, names)

    # -- cluster names -----------------------------------------------------------------------------

    def save_names(self, key: str, names: Sequence[ClusterName]) -> None:
        """Store names of a run's clusters, one row per (cluster, source), in one transaction.

        A name replaces the same source's earlier one; a failed try (``error`` set) keeps the earlier
        name and records the error beside it."""
        with self._db:
            self._upsert_names(key, names)

    def _upsert_names(self, key: str, names: Sequence[ClusterName]) -> None:
        now = time.time()
        rows = [(key, n.cluster, n.source, n.name, n.confidence, json.dumps(n.candidates, default=json_default),
                 n.error, n.created_at or now) for n in names]
        self._db.executemany(
            "INSERT INTO cluster_names(run_key, cluster, source, name, confidence, candidates, error, created_at) "
            "VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(run_key, cluster, source) DO UPDATE SET "
            "name=excluded.name, confidence=excluded.confidence, candidates=excluded.candidates, "
            "error=NULL, created_at=excluded.created_at", [r for r in rows if r[6] is None])
        self._db.executemany(
            "INSERT INTO cluster_names(run_key, cluster, source, name, confidence, candidates, error, created_at) "
            "VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(run_key, cluster, source) DO UPDATE SET error=excluded.error",
            [r for r in rows if r[6] is not None])

    def names(self, key: str) -> list[ClusterName]:
        """Every stored name of a run's clusters (all sources), by cluster then oldest first."""
        rows = self._db.execute(
            "SELECT cluster, name, source, confidence, candidates, error, created_at FROM cluster_names "
            "WHERE run_key=? ORDER BY cluster, created_at, source", (key,)).fetchall()
        return [ClusterName(r[0], r[1], r[2], r[3], [tuple(c) for c in json.loads(r[4])], r[5], r[6])  # type: ignore[misc]
                for r in rows]

    def delete_name(self, key: str, cluster: int, source: str) -> bool:
        """Forget one source's name of a cluster; True when there was one."""
        with self._db:
            cursor = self._db.execute("DELETE FROM cluster_names WHERE run_key=? AND cluster=? AND source=?",
                                      (key, cluster, source))
        return cursor.rowcount > 0

    def namer_answer(self, key: str) -> str | None:
        """A namer's cached answer (see ``save_namer_answer``), or None."""
        row = self._db.execute("SELECT answer FROM namer_answers WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def save_namer_answer(self, key: str, source: str, answer: str) -> None:
        """Cache a namer's answer under ``key`` (everything that decides it: a VLM's model, prompt and images; an
        image classifier's model and the image's content hash)."""
        self.save_namer_answers({key: answer}, source)

    def save_namer_answers(self, answers: dict[str, str], source: str) -> None:
        """Cache several answers of one namer (key → answer) in one transaction."""
        now = time.time()
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO namer_answers(key, source, answer, created_at) VALUES(?,?,?,?)",
                                 [(key, source, answer, now) for key, answer in answers.items()])

    def cached_array(self, kind: str, key: str) -> np.ndarray | None:
        """An array saved with ``save_cached_array`` (e.g. a vocabulary's text embeddings), or None."""
        path = self.path / "cache" / kind / f"{key}.npy"
        return np.load(path, allow_pickle=False) if path.exists() else None

    def save_cached_array(self, kind: str, key: str, array: np.ndarray) -> Path:
        """Keep an expensive derived array under ``cache/<kind>/<key>.npy`` (atomically)."""
        path = self.path / "cache" / kind / f"{key}.npy"
        atomic_write(path, npy_bytes(np.ascontiguousarray(array)))
        return path

    def runs(self) -> list[RunRecord]:
        """All finished runs, newest first."""
        rows = self._db.execute("SELECT * FROM runs ORDER BY created_at DESC, key DESC").fetchall()
        return [_run_from_row(row) for row in rows]

    def run_counts(self) -> list[tuple[str, int, int]]:
        """``(key, n_images, n_clusters)`` of every finished run, newest first, without reading their JSON."""
        return [(str(k), int(n), int(c)) for k, n, c in self._db.execute(
            "SELECT key, n_images, n_clusters FROM runs ORDER BY created_at DESC, key DESC").fetchall()]

    def run(self, key: str | None = None) -> RunRecord:
        """The run with ``key``; when ``key`` is None, the default run: the newest run that has
        clusters, or the newest run when none has any (a stray 0-cluster run is nobody's default)."""
        if key is None:
            row = (self._db.execute("SELECT * FROM runs WHERE n_clusters > 0 ORDER BY created_at DESC, key DESC "
                                    "LIMIT 1").fetchone()
                   or self._db.execute("SELECT * FROM runs ORDER BY created_at DESC, key DESC LIMIT 1").fetchone())
            if row is None:
                raise RunNotFound(f"The workspace {self.path} has no runs yet. Run `imgcluster cluster PATH` first.")
        else:
            row = self._db.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone()
            if row is None:
                known = [r.key for r in self.runs()]
                hint = (f"Recent runs: {', '.join(known[:5])}; pick one (`imgcluster runs list` lists them all)"
                        if known else "Recent runs: none; `imgcluster cluster PATH` makes one")
                raise RunNotFound(f"No run {key!r} in {self.path}. {hint}.")
        return _run_from_row(row)

    def save_evaluation(self, key: str, labels_source: str, metrics: dict[str, Any]) -> None:
        """Record how a run scores against known labels."""
        with self._db:
            self._db.execute("INSERT INTO evaluations(run_key, created_at, labels_source, metrics) VALUES(?,?,?,?)",
                             (key, time.time(), labels_source, json.dumps(metrics, default=json_default)))

    def evaluations(self, key: str) -> list[dict[str, Any]]:
        """Past evaluations of a run, oldest first."""
        rows = self._db.execute("SELECT created_at, labels_source, metrics FROM evaluations WHERE run_key=? "
                                "ORDER BY id", (key,)).fetchall()
        return [{"created_at": r[0], "labels_source": r[1], "metrics": json.loads(r[2])} for r in rows]

    def save_stability(self, key: str, result: dict[str, Any]) -> None:
        """Record a stability measurement of a run (see ``api.stability``) beside it."""
        with self._db:
            self._db.execute("INSERT INTO stability(run_key, created_at, result) VALUES(?,?,?)",
                             (key, time.time(), json.dumps(result, default=json_default)))

    def stability(self, key: str) -> list[dict[str, Any]]:
        """Past stability measurements of a run, oldest first (each with its ``created_at``)."""
        rows = self._db.execute("SELECT created_at, result FROM stability WHERE run_key=? ORDER BY id",
                                (key,)).fetchall()
        return [{"created_at": r[0], **json.loads(r[1])} for r in rows]

    def delete_run(self, key: str) -> RunRecord:
        """Forget a run: its row, assignments, names, evaluations and stability records in one
        transaction, then its folder ``runs/<key>/``. Embeddings and other runs are untouched.
        Returns the deleted record; raises RunNotFound (with the recent keys) for an unknown key."""
        record = self.run(key)
        with self._db:
            for table in ("assignments", "cluster_names", "evaluations", "stability"):
                self._db.execute(f"DELETE FROM {table} WHERE run_key=?", (key,))
            self._db.execute("DELETE FROM runs WHERE key=?", (key,))
        folder = self.run_dir(key)
        # The key came from the catalogue, but a folder outside runs/ is never removed.
        if folder.is_dir() and folder.resolve().parent == (self.path / "runs").resolve():
            shutil.rmtree(folder)
        return record

    def assignments(self, key: str) -> Assignments:
        """A run's per-image results, ordered by image id."""
        path = self.run_dir(key) / ASSIGNMENTS_FILE
        if path.exists():
            try:
                return read_assignments(path)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                raise WorkspaceDamaged(damage_message(self.path, f"run {key}'s {path} cannot be read ({error})")) from None
        # Runs saved before schema version 7 keep their assignments as rows.
        rows = self._db.execute(
            "SELECT image_id, cluster, membership_probability, x, y, how FROM assignments WHERE run_key=? "
            "ORDER BY image_id", (key,)).fetchall()
        if not rows and self._db.execute("SELECT n_images FROM runs WHERE key=? AND n_images > 0",
                                         (key,)).fetchone():
            # An empty answer here would make every image of the run look new (update would re-file them all).
            raise WorkspaceDamaged(damage_message(self.path, f"run {key}'s assignments file {path} is missing"))
        columns = list(zip(*rows)) if rows else [(), (), (), (), (), ()]
        return Assignments(
            image_ids=np.asarray(columns[0], dtype=np.int64), clusters=np.asarray(columns[1], dtype=np.int64),
            membership_probability=np.asarray(columns[2], dtype=np.float64),
            x=np.asarray(columns[3], dtype=np.float64), y=np.asarray(columns[4], dtype=np.float64),
            how=np.asarray(columns[5], dtype=object))


def read_assignments(path: Path) -> Assignments:
    """The assignments file ``path`` (see ``_assignment_bytes``); ValueError when its columns disagree."""
    with np.load(path, allow_pickle=False) as data:
        # "leaf": each image's cluster tree leaf, kept since leaves finer than the clusters (absent: its cluster).
        read = Assignments(image_ids=data["image_id"], clusters=data["cluster"],
                           membership_probability=data["membership_probability"], x=data["x"], y=data["y"],
                           how=data["how"].astype(object), leaves=data["leaf"] if "leaf" in data.files else None)
    lengths = {len(read.image_ids), len(read.clusters), len(read.membership_probability), len(read.x),
               len(read.y), len(read.how), len(read.leaf_per_image())}
    if len(lengths) != 1:
        raise ValueError(f"its columns have different lengths {sorted(lengths)}")
    return read


def _assignment_bytes(assignments: Assignments) -> bytes:
    """``assignments`` as an uncompressed npz of columns sorted by image id (no pickled objects)."""
    import io

    ids = np.asarray(assignments.image_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    buffer = io.BytesIO()
    leaves = {} if assignments.leaves is None else {"leaf": np.asarray(assignments.leaves, dtype=np.int64)[order]}
    np.savez(buffer, **leaves, image_id=ids[order], cluster=np.asarray(assignments.clusters, dtype=np.int64)[order],
             membership_probability=np.asarray(assignments.membership_probability, dtype=np.float64)[order],
             x=np.asarray(assignments.x, dtype=np.float64)[order], y=np.asarray(assignments.y, dtype=np.float64)[order],
             how=np.asarray(assignments.how_per_image(), dtype=str)[order] if len(ids) else np.zeros(0, "U8"))
    return buffer.getvalue()


def _unusable_folder(path: Path, error: Exception) -> ConfigError:
    reason = getattr(error, "strerror", None) or str(error)
    return ConfigError(f"Cannot use {path} as a workspace ({reason}). Give a folder you may write to with --workspace.")


def _schema_version(db: sqlite3.Connection) -> str | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:  # a new workspace: no tables yet
        return None
    return None if row is None else str(row[0])


def _check_version(path: Path, version: str | None) -> None:
    """Refuse a schema this imgcluster does not know: newer (never downgraded) or unreadable."""
    if version is None:
        return
    try:
        number = int(version)
    except ValueError:
        raise WorkspaceDamaged(damage_message(path, f"the catalogue's schema_version is {version!r}, not a number"))
    if number > SCHEMA_VERSION:
        raise WorkspaceTooNew(
            f"The workspace {path} was made by a newer imgcluster (schema {number}; this one knows up to "
            f"{SCHEMA_VERSION}). Upgrade imgcluster (pip install -U imgcluster) to use it; it is left as it is.")


def damage_message(path: Path, what: str) -> str:
    """What is damaged in the workspace at ``path`` and the command that repairs it."""
    return (f"The workspace {path} is damaged: {what}. Run `imgcluster doctor --workspace {path}` to see "
            f"everything that is wrong, and `imgcluster doctor --repair --workspace {path}` to repair it "
            "(nothing is deleted: what cannot be saved is moved to quarantine/).")


_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def is_corruption(error: BaseException) -> bool:
    """True when an sqlite3 error says the database file itself is damaged (not busy, not a bad query)."""
    return isinstance(error, sqlite3.DatabaseError) and (
        getattr(error, "sqlite_errorname", "").startswith(_CORRUPT)
        or "malformed" in str(error) or "not a database" in str(error))


class _Catalogue(sqlite3.Connection):
    """A connection whose corruption errors become WorkspaceDamaged naming the workspace."""

    workspace_path: Path | None = None

    def execute(self, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().execute(*args)
        except sqlite3.DatabaseError as error:
            raise self._damage(error) from error

    def executemany(self, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().executemany(*args)
        except sqlite3.DatabaseError as error:
            raise self._damage(error) from error

    def executescript(self, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().executescript(*args)
        except sqlite3.DatabaseError as error:
            raise self._damage(error) from error

    def _damage(self, error: sqlite3.DatabaseError) -> Exception:
        if not is_corruption(error):
            return error
        where = self.workspace_path or Path("WORKSPACE")
        return WorkspaceDamaged(damage_message(where, f"its catalogue {where / 'catalogue.db'} is corrupt ({error})"))


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _holds_data(path: Path) -> bool:
    """Whether the workspace folder holds vectors or runs (so its catalogue cannot start afresh)."""
    return any((path / name).is_dir() and any((path / name).iterdir()) for name in ("vectors", "runs"))


def catalogue_problem(path: Path) -> str | None:
    """What is wrong with ``path``/catalogue.db that shows without reading it through SQLite (empty
    while the workspace holds data, not an SQLite file, shorter than its header says), or None.
    Reads the first 100 bytes only: cheap enough for every open."""
    catalogue = path / "catalogue.db"
    if not catalogue.is_file():
        return None
    size = catalogue.stat().st_size
    if size == 0:
        holds = [name for name in ("vectors", "runs") if any((path / name).glob("*"))]
        return (f"its catalogue {catalogue} is empty (0 bytes) although the workspace holds {' and '.join(holds)}"
                if holds else None)
    with open(catalogue, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        return f"its catalogue {catalogue} is not an SQLite database ({size} bytes of something else)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages, changes, valid_for = (int.from_bytes(header[i:i + 4], "big") for i in (28, 24, 92))
    # The header's page count is trustworthy only when its change counter matches (SQLite's own rule).
    if pages and changes == valid_for and size < pages * page_size:
        return (f"its catalogue {catalogue} is truncated ({size:,} bytes of the {pages * page_size:,} its "
                "header declares)")
    return None


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a workspace written by an older imgcluster up to the current columns."""
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    data["config"] = json.loads(data["config"])
    return RunRecord.from_stored(data, json.loads(data.pop("info")))


def _upgrade(db: sqlite3.Connection, version: str | None) -> None:
    """Bring the catalogue from schema ``version`` (None: a new one) to ``SCHEMA_VERSION`` in one transaction."""
    with db:
        db.executescript(SCHEMA)
        _add_missing_columns(db)
        if version is not None and int(version) < 8:
            _upgrade_run_results(db)
        db.execute("CREATE INDEX IF NOT EXISTS images_source ON images(source_path)")
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))


def _upgrade_run_results(db: sqlite3.Connection) -> None:
    """Schema 8: every run's results in the typed format (``records.RESULTS_FORMAT``)."""
    rows = db.execute("SELECT key, info FROM runs").fetchall()
    db.executemany("UPDATE runs SET info=? WHERE key=?",
                   [(json.dumps(upgrade_results(json.loads(info)), default=json_default), key) for key, info in rows])
