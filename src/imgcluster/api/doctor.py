"""``doctor``: check a workspace's files and repair what can be repaired (see ``store.doctor``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cluster.predictor import Predictor
from ..embed import check_device, load_model, recorded_settings
from ..embed.runner import embed_records
from ..errors import ConfigError, ModelUnavailable, WorkspaceNotFound
from ..store import Workspace, locate_workspace
from ..store import doctor as store_doctor
from ..store.doctor import Action, Problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkup:
    """What ``doctor`` found in ``workspace`` (``problems``), what it did about them (``actions``,
    with ``repair``) and what is still wrong after that (``remaining``)."""

    workspace: Path
    problems: list[Problem]
    actions: list[Action] = field(default_factory=list)
    remaining: list[Problem] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when nothing is (still) wrong."""
        return not self.remaining


def doctor(path: str | os.PathLike[str] | None = None, *, workspace: str | os.PathLike[str] | Workspace | None = None,
           repair: bool = False, device: str = "auto") -> Checkup:
    """Check the workspace of the image folder ``path`` (or ``workspace``): the catalogue, every
    vector shard (shape, dtype, finite values, digest), every run's assignments and predictor, and
    the vector indexes. With ``repair``: re-embed the images of lost vectors, rebuild predictors and
    indexes, quarantine what can't be saved (``WORKSPACE/quarantine/``); nothing is ever deleted.
    A workspace made by a newer imgcluster is reported, never changed."""
    check_device(device)
    if isinstance(workspace, Workspace):
        workspace = workspace.path
    folder = locate_workspace(path, workspace).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"The workspace {folder} is a file, not a folder. Give the workspace folder "
                          "(e.g. --workspace PATH/.imgcluster).")
    if not folder.is_dir():
        raise WorkspaceNotFound(f"No imgcluster workspace at {folder}: nothing to check. Run `imgcluster cluster "
                                "FOLDER` first, or pass the --workspace that holds one.")
    problems = store_doctor.check(folder)
    for problem in problems:
        log.info("%s: %s", problem.path, problem.message)
    if not repair or not problems:
        return Checkup(folder, problems, [], problems)
    actions = store_doctor.repair(folder, problems, reembed=lambda ws, model_id, hashes: _reembed(
        ws, model_id, hashes, device), rebuild_predictor=_rebuild_predictor, rebuild_index=_rebuild_index)
    return Checkup(folder, problems, actions, store_doctor.check(folder))


def _reembed(ws: Workspace, model_id: str, hashes: Sequence[str], device: str) -> str:
    """Embed the contents ``hashes`` again with the model that made ``model_id``; what was done."""
    row = next((m for m in ws.models() if m["model_id"] == model_id), None)
    if row is None:
        raise ModelUnavailable(f"the catalogue does not say which model made {model_id}")
    embedder = load_model(row["name"], device=device, **recorded_settings(row["info"]))
    if embedder.model_id != model_id:
        raise ModelUnavailable(f"{row['name']} now loads as {embedder.model_id}, not {model_id}; its weights changed")
    by_hash = ws.images_by_hash(hashes)
    records = [found[0] for found in by_hash.values()]
    report = embed_records(records, embedder, ws)
    gone = len(set(hashes)) - len(records)
    return (f"embedded {report.n_embedded} images again with {row['name']}"
            + (f"; {len(report.undecodable)} could not be read (now skipped)" if report.undecodable else "")
            + (f"; {gone} contents are no longer in the catalogue" if gone else ""))


def _rebuild_predictor(ws: Workspace, key: str) -> str:
    """Build run ``key``'s predictor again from its assignments and stored embeddings."""
    record = ws.run(key)
    assignments = ws.assignments(key)
    ids = np.asarray(assignments.image_ids, dtype=np.int64)
    by_id = {r.id: r.content_hash for r in ws.images(ids=ids.tolist())}
    hashes = [by_id.get(int(i)) for i in ids]
    if any(h is None for h in hashes):
        raise ModelUnavailable(f"{sum(h is None for h in hashes)} images of run {key} have no content hash")
    vectors = ws.embeddings_view(record.model_id, hashes)  # type: ignore[arg-type]
    seed = int(record.config.get("reduce", {}).get("seed") or 0)
    predictor = Predictor(seed=seed).fit(vectors, assignments.clusters, assignments.membership_probability,
                                         np.c_[assignments.x, assignments.y], ids)
    ws.write_predictor(key, *predictor.state())
    return f"built run {key}'s predictor again from its {len(ids)} images' embeddings"


def _rebuild_index(ws: Workspace, model_id: str) -> str:
    from .search import current_index

    return f"built the vector index of {model_id} again: {current_index(ws, model_id).describe()}"
