"""Check a workspace's files and repair what can be repaired, like ``git fsck`` or SQLite's
``integrity_check``: ``check(path)`` lists problems, ``repair(path, problems, ...)`` mends them.

What is checked: the catalogue (a readable SQLite file of a schema this imgcluster knows, passing
``PRAGMA integrity_check``), every vector shard the catalogue points at (present, a 2-D float
array with the rows pointed at, finite values, and the bytes its sidecar's digest recorded), every
run's assignments file and predictor (arrays, parameters, a faiss index that loads with the rows
the arrays describe), and each model's vector index.

Repairs never delete a file: what cannot be saved is moved to ``quarantine/<what>-<time>/``. Work
that needs a model or another stage (re-embedding, rebuilding an index) is done through callables
the API passes in, so this module stays in the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WorkspaceBusy, WorkspaceDamaged, WorkspaceNotFound, WorkspaceTooNew
from ..neighbours import read_index
from .records import upgrade_results
from .shards import shard_problem
from .files import model_dirname
from .workspace import (ASSIGNMENTS_FILE, SIDECAR_SUFFIX, Workspace, catalogue_problem,
                        read_assignments, shard_digest)

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"

# What each kind of problem is, and what --repair does about it (the docs' table says the same).
REPAIRS = {
    "catalogue": "moves the catalogue to quarantine, starts a new one with every row that can still be read, "
                 "re-indexes vector shards from their sidecars, registers runs again from run.json, and "
                 "quarantines runs whose images can't be matched",
    "schema": "nothing: the workspace is from a newer imgcluster; upgrade imgcluster",
    "shard": "moves the shard to quarantine, forgets its rows and embeds those images again",
    "assignments": "moves the run's folder to quarantine and removes the run (its assignments can't be rebuilt)",
    "predictor": "moves the predictor to quarantine and builds it again from the run's assignments and embeddings",
    "vector-index": "moves the index to quarantine and builds it again from the embeddings",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workspace: its ``kind`` (a key of ``REPAIRS``), the damaged ``path``,
    what is wrong, and the run or model it belongs to."""

    kind: str
    path: str
    message: str
    run: str | None = None
    model_id: str | None = None

    @property
    def repair(self) -> str:
        """What ``repair`` does about it."""
        return REPAIRS[self.kind]


@dataclass(frozen=True)
class Action:
    """One thing ``repair`` did (or could not do: ``done`` False, with the next step in ``message``)."""

    kind: str
    path: str
    message: str
    done: bool = True


Reembed = Callable[[Workspace, str, Sequence[str]], str]
Rebuild = Callable[[Workspace, str], str]


# -- checking -------------------------------------------------------------------------------------

def check(path: str | Path, *, read_values: bool = True) -> list[Problem]:
    """Every problem found in the workspace folder ``path`` (empty: healthy). ``read_values`` reads
    every stored vector (finite? digest?): a full read of the shards."""
    path = Path(path).expanduser().resolve()
    catalogue = path / "catalogue.db"
    if not catalogue.is_file():
        if any((path / name).is_dir() and any((path / name).iterdir()) for name in ("vectors", "runs")):
            return [Problem("catalogue", str(catalogue), "the catalogue is missing, though the workspace holds "
                            "vectors or runs")]
        raise WorkspaceNotFound(f"No imgcluster workspace at {path}: nothing to check.")
    try:
        ws = Workspace.open(path, create=False)
    except WorkspaceTooNew as error:
        return [Problem("schema", str(catalogue), str(error))]
    except WorkspaceDamaged as error:
        return [Problem("catalogue", str(catalogue), catalogue_problem(path) or str(error))]
    with contextlib.closing(ws):
        try:
            verdict = [str(r[0]) for r in ws._db.execute("PRAGMA integrity_check(20)").fetchall()]
        except WorkspaceDamaged as error:
            verdict = [str(error.__cause__ or error)]
        if verdict != ["ok"]:
            return [Problem("catalogue", str(catalogue), "SQLite's integrity check fails: " + "; ".join(verdict[:3]))]
        return [*_shard_problems(ws, read_values), *_run_problems(ws), *_index_problems(ws)]


def _shard_problems(ws: Workspace, read_values: bool) -> list[Problem]:
    found = []
    for model_id, shard, rows in ws._db.execute(
            "SELECT model_id, shard, MAX(row) + 1 FROM embeddings GROUP BY model_id, shard ORDER BY model_id, shard"):
        file = ws.path / "vectors" / model_dirname(model_id) / shard
        problem = shard_problem(file, rows=int(rows), read_values=read_values)
        if problem is None and read_values:
            problem = _digest_problem(file)
        if problem is not None:
            found.append(Problem("shard", str(file), f"the vector shard {problem}", model_id=model_id))
    return found


def _digest_problem(file: Path) -> str | None:
    sidecar = file.with_suffix(SIDECAR_SUFFIX)
    try:
        recorded = json.loads(sidecar.read_text()).get("blake2b")
    except (OSError, ValueError, AttributeError):
        return None  # shards written before sidecars existed have no digest to compare
    if recorded and shard_digest(file.read_bytes()) != recorded:
        return "holds other bytes than were written (its digest differs from the one in its sidecar)"
    return None


def _run_problems(ws: Workspace) -> list[Problem]:
    found = []
    for key, n_images in ws._db.execute("SELECT key, n_images FROM runs ORDER BY created_at, key").fetchall():
        try:
            ws.assignments(key)
        except WorkspaceDamaged as error:
            found.append(Problem("assignments", str(ws.run_dir(key) / ASSIGNMENTS_FILE), _what(error), run=key))
            continue
        problem = predictor_problem(ws, key)
        if problem is not None:
            found.append(Problem("predictor", str(ws.run_dir(key) / "predictor"), problem, run=key))
    return found


def predictor_problem(ws: Workspace, key: str) -> str | None:
    """What is wrong with run ``key``'s saved predictor, or None (also for a run saved before predictors)."""
    folder = ws.run_dir(key) / "predictor"
    if not (folder / "predictor.json").exists() and not (folder / "index.faiss").exists():
        return None  # made by an older imgcluster: nothing to check
    try:
        arrays, index_file, params = ws.read_predictor(key)
    except WorkspaceDamaged as error:
        return _what(error)
    except Exception as error:  # RunNotFound: the parameters file is gone
        return f"the predictor cannot be read ({error})"
    try:
        index = read_index(index_file, mapped=True)
    except RuntimeError as error:
        return f"the predictor index {index_file} cannot be read ({str(error).strip().splitlines()[0]})"
    added = arrays.get("added_vectors")
    rows = index.ntotal + (0 if added is None else len(added))
    if "clusters" not in arrays or rows != len(arrays["clusters"]):
        return f"the predictor index {index_file} holds {rows} rows for {len(arrays.get('clusters', []))} images"
    return None


def _index_problems(ws: Workspace) -> list[Problem]:
    found = []
    for model_id, in ws._db.execute("SELECT DISTINCT model_id FROM embeddings").fetchall():
        folder = ws.index_dir(model_id)
        if folder.is_dir() and ws.read_vector_index(model_id) is None:
            found.append(Problem("vector-index", str(folder), "the vector index's files are missing or disagree",
                                 model_id=model_id))
    return found


def _what(error: Exception) -> str:
    """The middle of a damage message: what is damaged, without the advice around it."""
    text = str(error)
    start = text.find(" is damaged: ")
    end = text.find(". Run `imgcluster doctor")
    return text[start + len(" is damaged: "):end] if start >= 0 and end > start else text


# -- repairing ------------------------------------------------------------------------------------

def repair(path: str | Path, problems: Sequence[Problem], *, reembed: Reembed | None = None,
           rebuild_predictor: Rebuild | None = None, rebuild_index: Rebuild | None = None) -> list[Action]:
    """Mend ``problems`` (from ``check``) and say what was done.

    ``reembed(ws, model_id, content_hashes)`` embeds those contents again; ``rebuild_predictor(ws,
    run key)`` and ``rebuild_index(ws, model_id)`` build those again. Each returns what it did; one
    that is None or raises leaves an Action with ``done`` False and the command to run instead."""
    path = Path(path).expanduser().resolve()
    actions: list[Action] = []
    kinds = {p.kind for p in problems}
    if "schema" in kinds:
        return [Action("schema", p.path, p.message, done=False) for p in problems if p.kind == "schema"]
    if "catalogue" in kinds:
        with _folder_lock(path):
            actions += _rebuild_catalogue(path)
    ws = Workspace.open(path)
    try:
        ws.lock()
        if "catalogue" in kinds:
            problems = [p for p in check(path) if p.kind != "catalogue"]
        lost: dict[str, list[str]] = {}
        for problem in problems:
            if problem.kind == "shard":
                hashes, action = _drop_shard(ws, problem)
                lost.setdefault(str(problem.model_id), []).extend(hashes)
                actions.append(action)
            elif problem.kind == "assignments":
                actions.append(quarantine_run(ws, str(problem.run), problem.message))
        for model_id, hashes in lost.items():
            actions.append(_call(reembed, "shard", str(ws.path / "vectors" / model_dirname(model_id)),
                                 lambda: reembed(ws, model_id, hashes),  # type: ignore[misc]
                                 f"{len(hashes)} images need embedding again: run `imgcluster embed FOLDER` "
                                 f"with the model that made {model_id}"))
        for problem in problems:
            if problem.kind == "predictor":
                moved = quarantine(ws.path, Path(problem.path), f"predictor-{problem.run}")
                actions.append(Action("predictor", problem.path, f"moved the damaged predictor to {moved}"))
                actions.append(_call(rebuild_predictor, "predictor", problem.path,
                                     lambda: rebuild_predictor(ws, str(problem.run)),  # type: ignore[misc]
                                     "run `imgcluster cluster` again to make a new run with a predictor"))
        for problem in problems:  # last: saving an index may hand the lock back
            if problem.kind == "vector-index":
                moved = quarantine(ws.path, Path(problem.path), "index")
                actions.append(Action("vector-index", problem.path, f"moved the vector index to {moved}"))
                actions.append(_call(rebuild_index, "vector-index", problem.path,
                                     lambda: rebuild_index(ws, str(problem.model_id)),  # type: ignore[misc]
                                     "`imgcluster search` builds it again when next used"))
    finally:
        ws.close()
    return actions


def _call(function: Callable[..., str] | None, kind: str, path: str, call: Callable[[], str], instead: str) -> Action:
    if function is None:
        return Action(kind, path, f"not done here: {instead}", done=False)
    try:
        return Action(kind, path, call())
    except Exception as error:  # one failed rebuild must not stop the other repairs
        log.warning("repair of %s failed: %s", path, error)
        return Action(kind, path, f"failed ({error}); {instead}", done=False)


def quarantine(workspace: Path, source: Path, label: str) -> Path:
    """Move ``source`` (a file or folder of the workspace) to ``quarantine/<label>-<time>/`` and
    return where it went. Nothing is deleted."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = workspace / QUARANTINE / f"{label}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = workspace / QUARANTINE / f"{label}-{stamp}-{n}"
    target.mkdir(parents=True)
    shutil.move(str(source), str(target / source.name))
    log.info("moved %s to %s", source, target)
    return target / source.name


def quarantine_run(ws: Workspace, key: str, why: str) -> Action:
    """Move run ``key``'s folder to quarantine (with its names, evaluations and stability rows as
    JSON beside it) and remove the run from the catalogue."""
    folder = ws.run_dir(key)
    saved = {table: [dict(row) for row in ws._db.execute(f"SELECT * FROM {table} WHERE run_key=?", (key,))]
             for table in ("cluster_names", "evaluations", "stability")}
    row = ws._db.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone()
    saved["run"] = [dict(row)] if row is not None else []
    if not folder.is_dir():
        folder.mkdir(parents=True)
    (folder / "catalogue-rows.json").write_text(json.dumps(saved, indent=2, default=str))
    moved = quarantine(ws.path, folder, f"run-{key}")
    with ws._db:
        for table in ("assignments", "cluster_names", "evaluations", "stability"):
            ws._db.execute(f"DELETE FROM {table} WHERE run_key=?", (key,))
        ws._db.execute("DELETE FROM runs WHERE key=?", (key,))
    return Action("assignments", str(folder), f"run {key} can't be used ({why}): moved its folder to {moved} "
                  "and removed it from the catalogue; `imgcluster cluster` makes a new run")


def _drop_shard(ws: Workspace, problem: Problem) -> tuple[list[str], Action]:
    file = Path(problem.path)
    shard = file.name
    hashes = [r[0] for r in ws._db.execute("SELECT content_hash FROM embeddings WHERE model_id=? AND shard=?",
                                           (problem.model_id, shard))]
    moved = None
    if file.exists():
        moved = quarantine(ws.path, file, f"shard-{file.stem}")
        sidecar = file.with_suffix(SIDECAR_SUFFIX)
        if sidecar.exists():
            shutil.move(str(sidecar), str(moved.with_suffix(SIDECAR_SUFFIX)))
    with ws._db:
        ws._db.execute("DELETE FROM embeddings WHERE model_id=? AND shard=?", (problem.model_id, shard))
    where = f"moved it to {moved}" if moved else "it was gone"
    return hashes, Action("shard", problem.path, f"{problem.message}: {where} and forgot its {len(hashes)} embeddings")


# -- a damaged catalogue ----------------------------------------------------------------------------

@contextlib.contextmanager
def _folder_lock(path: Path) -> Iterator[None]:
    """The workspace's writer lock, taken without opening the catalogue (which may be unreadable)."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceBusy(f"The workspace {path} is being written by another process; repair it when "
                                "that has finished.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rebuild_catalogue(path: Path) -> list[Action]:
    """Quarantine the catalogue, start a new one with the rows that can still be read, re-index
    shards from their sidecars and register runs again from their run.json."""
    old = path / "catalogue.db"
    actions = []
    if old.exists():
        moved = quarantine(path, old, "catalogue")
        for suffix in ("-wal", "-shm"):
            extra = path / f"catalogue.db{suffix}"
            if extra.exists():
                shutil.move(str(extra), str(moved.parent / extra.name))
        actions.append(Action("catalogue", str(old), f"moved the damaged catalogue to {moved}"))
        copied = _salvage(moved, path)
        actions.append(Action("catalogue", str(old), "started a new catalogue; rows read back from the old one: "
                              + (", ".join(f"{n} {t}" for t, n in copied.items() if n) or "none")))
    ws = Workspace.open(path, fresh=True)
    try:
        reindexed = _reindex_shards(ws)
        actions.append(Action("catalogue", str(path / "vectors"),
                              f"re-indexed {reindexed} embeddings from the shards' sidecars"))
        actions += _reregister_runs(ws)
    finally:
        ws.close()
    return actions


# Tables copied back in this order (runs before the rows that refer to them).
_TABLES = ("meta", "images", "models", "embeddings", "thumbnails", "frames", "perceptual_hashes", "namer_answers",
           "runs", "assignments", "cluster_names", "evaluations", "stability")


def _salvage(damaged: Path, path: Path) -> dict[str, int]:
    """Copy every row SQLite can still read from the ``damaged`` catalogue into a new one at ``path``."""
    Workspace.open(path, fresh=True).close()
    copied: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        readable = _readable_copy(damaged, Path(scratch))
        try:
            source = sqlite3.connect(f"file:{readable}?mode=ro", uri=True)
        except sqlite3.Error:
            return copied
        target = sqlite3.connect(path / "catalogue.db")
        try:
            for table in _TABLES:
                if table != "meta":
                    copied[table] = _copy_rows(source, target, table)
            target.commit()
        finally:
            source.close()
            target.close()
    return copied


def _readable_copy(damaged: Path, folder: Path) -> Path:
    """A copy of ``damaged`` (and its WAL) that SQLite will read: SQLite refuses every table of a
    file shorter than its header declares, so the copy is padded back to that size with zeros (the
    tables on lost pages then fail alone)."""
    copy = folder / "catalogue.db"
    data = bytearray(damaged.read_bytes())
    wal = damaged.with_name(damaged.name + "-wal")
    if wal.is_file():
        shutil.copyfile(wal, folder / "catalogue.db-wal")
    if len(data) >= 100 and data.startswith(b"SQLite format 3\x00"):
        page_size = int.from_bytes(data[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        declared = int.from_bytes(data[28:32], "big") * page_size
        if page_size >= 512 and len(data) < declared:
            data.extend(bytes(declared - len(data)))
    copy.write_bytes(bytes(data))
    return copy


# JSON columns: a long value whose overflow pages were lost reads back padded with zeros, no error.
_JSON_COLUMNS = {"runs": ("config", "info"), "evaluations": ("metrics",), "stability": ("result",)}


def _whole_json(row: dict[str, object], columns: Sequence[str]) -> bool:
    """Whether each of ``columns`` of ``row`` holds JSON that parses (a run's row that does not is
    registered again from its run.json instead)."""
    try:
        for column in columns:
            json.loads(str(row[column]))
    except ValueError:
        return False
    return True


def _copy_rows(source: sqlite3.Connection, target: sqlite3.Connection, table: str) -> int:
    columns = [r[1] for r in target.execute(f"PRAGMA table_info({table})")]
    n = 0
    try:
        have = {r[1] for r in source.execute(f"PRAGMA table_info({table})")}
        shared = [c for c in columns if c in have]
        if not shared:
            return 0
        cursor = source.execute(f"SELECT {', '.join(shared)} FROM {table}")
        insert = f"INSERT OR IGNORE INTO {table}({', '.join(shared)}) VALUES({', '.join('?' * len(shared))})"
        checked = [c for c in _JSON_COLUMNS.get(table, ()) if c in shared]
        for row in cursor:  # a damaged page ends the table here; the rows before it are kept
            if checked and not _whole_json(dict(zip(shared, row)), checked):
                log.info("salvaging %s: left out a row whose JSON was cut short", table)
                continue
            target.execute(insert, row)
            n += 1
    except sqlite3.Error as error:
        log.info("salvaging %s stopped after %d rows: %s", table, n, error)
    return n


def _reindex_shards(ws: Workspace) -> int:
    """Embedding rows for shards whose rows the catalogue lacks, read from their sidecars."""
    known = {(r[0], r[1]) for r in ws._db.execute("SELECT DISTINCT model_id, shard FROM embeddings")}
    rows = []
    for sidecar in sorted((ws.path / "vectors").glob(f"*/*{SIDECAR_SUFFIX}")):
        shard = sidecar.with_suffix(".npy")
        try:
            info = json.loads(sidecar.read_text())
            model_id, hashes = str(info["model_id"]), [str(h) for h in info["content_hashes"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (model_id, shard.name) in known or shard_problem(shard, rows=len(hashes)) is not None:
            continue
        rows += [(h, model_id, shard.name, i) for i, h in enumerate(hashes)]
    with ws._db:
        # OR IGNORE: a content embedded twice (two shards) keeps the row read first.
        ws._db.executemany("INSERT OR IGNORE INTO embeddings(content_hash, model_id, shard, row) VALUES(?,?,?,?)",
                           rows)
    return len(rows)


def _reregister_runs(ws: Workspace) -> list[Action]:
    """Runs whose folder is whole but whose row was lost: registered again from ``run.json`` when
    every image they assign is in the catalogue, else quarantined (as are salvaged runs that lost images)."""
    actions = []
    known = {r[0] for r in ws._db.execute("SELECT key FROM runs")}
    ids = {r[0] for r in ws._db.execute("SELECT id FROM images")}
    for key in sorted(known):
        with contextlib.suppress(Exception):  # unreadable assignments: the next check names them
            if not set(ws.assignments(key).image_ids.tolist()) <= ids:
                actions.append(quarantine_run(ws, key, "the catalogue rows of some of its images were lost"))
    for folder in sorted((ws.path / "runs").glob("*/")) if (ws.path / "runs").is_dir() else []:
        if folder.name in known:
            continue
        try:
            record = json.loads((folder / "run.json").read_text())
            assignments = read_assignments(folder / ASSIGNMENTS_FILE)
            fields = [record[name] for name in ("key", "created_at", "root", "model_id", "model_name", "n_images",
                                                 "n_clusters", "config", "info")]
        except Exception as error:  # noqa: BLE001 -- unreadable JSON, a damaged zip, a missing field: not saved
            actions.append(quarantine_run(ws, folder.name, f"its files cannot be read: {error!r}"))
            continue
        if not set(np.asarray(assignments.image_ids).tolist()) <= ids:
            actions.append(quarantine_run(ws, folder.name, "the catalogue rows of its images were lost"))
            continue
        with ws._db:
            ws._db.execute(
                "INSERT INTO runs(key, created_at, root, model_id, model_name, n_images, n_clusters, config, info) "
                "VALUES(?,?,?,?,?,?,?,?,?)", (*fields[:7], json.dumps(fields[7]), json.dumps(upgrade_results(fields[8]))))
            model = fields[8].get("model") or {}
            if model.get("model_id") == record["model_id"] and model.get("dim"):
                ws._db.execute("INSERT OR IGNORE INTO models(model_id, name, dim, info) VALUES(?,?,?,?)",
                               (record["model_id"], record["model_name"], int(model["dim"]),
                                json.dumps(model, sort_keys=True)))
        actions.append(Action("catalogue", str(folder), f"registered run {folder.name} again from its run.json"))
    return actions
