"""A living collection: file new images into a run's clusters, keep every cluster id, propose new
clusters from what does not fit, and say when the collection has drifted enough to refit.

Each update is a new run derived from the old one (``record.provenance``: "update" and its parent):
the parent stays as it was, so the two can be compared, and nothing is renumbered. An image in the
parent keeps its cluster; a removed file leaves its cluster without renumbering the others.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import NOISE
from ..cluster.cohesive import TREE_UP_TO
from ..cluster.openset import check_held_quantile
from ..cluster.predictor import Predictor
from ..config import ClusterConfig, EmbedConfig, ReduceConfig, RunConfig
from ..embed import recorded_settings
from ..errors import ConfigError, ModelUnavailable, NoImages
from ..run import REVIEW, UPDATE, ProposedCluster, Provenance, Run, filing, save_run
from ..run.filing import ACCEPTED, FORCED, HELD, PROPOSED, Filed, file_new  # noqa: F401 -- their old home
from ..run.metrics import new_run_key
from ..run.record import stored_run
from ..store import Assignments, ClusterName, ImageRecord, RunRecord, Workspace
from . import naming
from .steps import (StageProgress, check_has_clusters, check_new_key, embed, fit_clusters, no_images_message,
                    open_workspace, scan, stage_progress)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Update:
    """What :func:`update` did: the derived run, and how its images got there."""

    run: Run
    parent: str
    n_new: int
    n_removed: int
    n_filed: int
    n_held: int
    n_forced: int
    proposed: list[ProposedCluster]
    drift: str | None       # why a full re-fit is advised, or None
    seconds: dict[str, float]
    saved: bool = True      # False when nothing changed: ``run`` is then the parent itself
    n_changed: int = 0      # files rewritten since the parent run, filed again
    # Held new images by the test they failed: far (from every image), density, typicality or
    # agreement (below their cluster's own members), group (held with held images of the batch),
    # unclustered (their nearest images are), probability (below min_probability); counted before
    # proposals and --force take some of them.
    held_by: dict[str, int] = dataclasses.field(default_factory=dict)


def update(path: str | os.PathLike[str], *, run: str | None = None, workspace: str | os.PathLike[str] | None = None,
           min_probability: float = 0.0, force: bool = False, propose: bool = True, run_key: str | None = None,
           progress: StageProgress | None = None, held_quantile: float | None = None) -> Update:
    """Scan ``path`` again, embed only new or changed files with the run's model, file them into the
    run's clusters (when ``run`` is None, the newest run with clusters; a run without clusters is
    refused, naming those that have some) and save the result as a new derived run.

    A new image is *filed* when the run's predictor assigns it with membership probability of at
    least ``min_probability``; otherwise it is *held* as unassigned, or, with ``force``, put in the
    cluster of its nearest clustered image (*forced*, that similarity recorded as the reason). With
    ``propose``, dense groups among held and unclustered images become new clusters (*proposed*),
    with new ids, to accept or reject with :func:`review_proposals`. A new image is also held when it
    is less typical of the cluster it would join than the run's ``held_quantile`` of that cluster's
    own members (``ClusterConfig.held_quantile``; this argument overrides it, 0 turns it off).
    """
    check_held_quantile(held_quantile)
    if not 0.0 <= min_probability <= 1.0:
        raise ConfigError(f"min_probability must be between 0 and 1; got {min_probability}.")
    if not Path(path).expanduser().exists():
        raise NoImages(f"{path} does not exist. Give the folder the run clustered.")
    stage = stage_progress(progress)
    seconds: dict[str, float] = {}
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        parent = ws.run(run)
        check_has_clusters(ws, parent, "take new images")
        check_new_key(ws, run_key)
        config = RunConfig.from_dict(parent.config)
        started = time.perf_counter()
        found = scan(path, workspace=ws, config=config.scan, progress=stage("scan"))
        seconds["scan"] = time.perf_counter() - started
        if not found.images:
            raise NoImages(no_images_message(found))
        old = ws.assignments(parent.key)
        # A file rewritten since the run keeps its id but has bytes the run's model never embedded:
        # it leaves its old place and is filed again, like a new image.
        embedded_before = ws.embedded_hashes(parent.model_id)
        changed = {r.id for r in found.images if r.content_hash not in embedded_before}
        present = {r.id for r in found.images} - changed
        known = set(old.image_ids.tolist())
        kept = np.fromiter((i in present for i in old.image_ids.tolist()), dtype=bool, count=len(old.image_ids))
        new_records = [r for r in found.images if r.id not in known or r.id in changed]
        n_changed = len(changed & known)
        if not new_records and kept.all():
            log.info("nothing new or removed under %s since run %s", found.root, parent.key)
            return Update(stored_run(ws, parent), parent.key, 0, 0, 0, 0, 0, [], None, seconds, saved=False,
                          n_changed=0)

        started = time.perf_counter()
        embedded = embed(new_records, workspace=ws, config=_run_embed_config(parent, config.embed),
                         progress=stage("embed"))
        if embedded.images and embedded.model["model_id"] != parent.model_id:
            raise ModelUnavailable(f"Run {parent.key} was made with {parent.model_id}, but {parent.model_name} now "
                                   f"loads as {embedded.model['model_id']}. Run `imgcluster cluster` to refit.")
        seconds["embed"] = time.perf_counter() - started

        started = time.perf_counter()
        predictor = Predictor.from_state(*ws.read_predictor(parent.key))
        if held_quantile is not None:
            predictor.held_quantile = held_quantile
        result = filing.file_new(predictor, old, kept, embedded.vectors, np.asarray([r.id for r in embedded.images]),
                          min_probability, force)
        seconds["file"] = time.perf_counter() - started
        proposed: list[ProposedCluster] = []
        if propose:
            started = time.perf_counter()
            proposed = filing.propose(ws, parent, config, result, predictor, len(embedded.images),
                                      group=lambda *args: dense_groups(*args))  # looked up now: replaceable
            seconds["propose"] = time.perf_counter() - started
        n_removed = int((~kept).sum()) - n_changed
        provenance = Provenance(UPDATE, parent.key, {"new_images": len(embedded.images) - n_changed,
                                                     "removed_images": n_removed, "changed_images": n_changed})
        derived = save_derived(ws, parent, result, predictor, proposed, seconds, run_key or new_run_key(),
                               provenance, skipped=len(found.skipped), stage=progress,
                               catalogue={r.id: r for r in found.images})
        held = int(np.sum(result.how == HELD))
        return Update(derived, parent.key, len(embedded.images) - n_changed, n_removed,
                      int(np.sum(result.how[result.first_new:] == "filed")), held,
                      int(np.sum(result.how[result.first_new:] == FORCED)), list(derived.record.proposed),
                      filing.drift(held, len(derived.images), derived.record.key), dict(derived.record.timings),
                      n_changed=n_changed, held_by=dict(result.held_by))
    finally:
        ws.close()


def _run_embed_config(parent: RunRecord, config: EmbedConfig) -> EmbedConfig:
    return dataclasses.replace(config, model=parent.model_name, **recorded_settings(parent.model))


def dense_groups(vectors: np.ndarray, min_size: int, reduce_config: ReduceConfig, min_similarity: float,
                 min_cohesion: float, min_member_similarity: float = -1.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``imgcluster.run.filing.dense_groups`` with the run's recipe (reducer, then HDBSCAN) as its
    coarse split of many held images."""
    return filing.dense_groups(vectors, min_size, reduce_config, min_similarity, min_cohesion,
                               min_member_similarity, coarse=_coarse_groups)


def _coarse_groups(vectors: np.ndarray, min_size: int,
                   reduce_config: ReduceConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, HDBSCAN probabilities) of each group the run's recipe finds in more than
    ``TREE_UP_TO`` points; all rows as one group up to that."""
    n = len(vectors)
    if n <= TREE_UP_TO:
        return [(np.arange(n), np.ones(n))]
    _, clustering = fit_clusters(
        vectors, dataclasses.replace(reduce_config, fit_sample=0, map_method="pca"),
        ClusterConfig(method="hdbscan", min_cluster_size=min_size, noise="keep"))
    return [(np.flatnonzero(clustering.labels == label), clustering.probabilities[clustering.labels == label])
            for label in sorted(set(clustering.labels.tolist()) - {NOISE})]


def save_derived(ws: Workspace, parent: RunRecord, result: filing.Filed, predictor: Predictor,
                 proposed: list[ProposedCluster], seconds: dict[str, float], key: str, provenance: Provenance, *,
                 skipped: int = 0, stage: StageProgress | None = None,
                 catalogue: Mapping[int, ImageRecord] | None = None) -> Run:
    """Save ``result`` as a run derived from ``parent`` (an update or a review) by the one recipe."""
    proposals = [p.cluster for p in proposed]

    def name(ws: Workspace, record: RunRecord, images: list[ImageRecord], assignments: Assignments,
             progress: Any) -> tuple[list[ClusterName], None]:
        return _name_proposals(ws, parent, record, images, assignments, proposals), None

    draft = filing.draft(ws, parent, result, predictor, proposed, key, provenance, name=name, skipped=skipped,
                         timings=seconds, catalogue=catalogue)
    return save_run(ws, draft, report_progress=stage_progress(stage)("report"))


def _name_proposals(ws: Workspace, parent: RunRecord, record: RunRecord, images: list[ImageRecord],
                    assignments: Assignments, clusters: list[int]) -> list[ClusterName]:
    """Names for the proposed clusters, from the namer that named the parent's; a failure leaves
    them numbered and never costs the update."""
    namer = parent.naming and (parent.naming.named_by or parent.naming.namer)
    if not clusters or not namer or namer == "none":
        return []
    try:
        return naming.run_namer(ws, record, images, assignments, RunConfig.from_dict(parent.config).name, namer,
                                 clusters=clusters)
    except Exception as error:  # the filing is done; a namer must not undo it
        log.warning("Naming the proposed clusters with %s failed (%s).", namer, error)
        return []


def review_proposals(*, accept: list[int] | tuple[int, ...] = (), reject: list[int] | tuple[int, ...] = (),
                     run: str | None = None, path: str | os.PathLike[str] | None = None,
                     workspace: str | os.PathLike[str] | None = None, run_key: str | None = None) -> Run:
    """Accept or reject the new clusters an update proposed, as a new run derived from it.

    Accepted clusters keep their ids and become ordinary clusters; a rejected one's images go back
    to being held (unclustered). Proposals not named stay proposed."""
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        parent = ws.run(run)
        check_new_key(ws, run_key)
        pending = {p.cluster for p in parent.proposed}
        unknown = sorted((set(accept) | set(reject)) - pending)
        if unknown:
            raise ConfigError(f"Run {parent.key} proposes no cluster {unknown}; it proposes "
                              f"{sorted(pending) or 'none'}. `imgcluster update` makes proposals.")
        if set(accept) & set(reject):
            raise ConfigError(f"Clusters {sorted(set(accept) & set(reject))} are both accepted and rejected.")
        result, predictor = filing.review(ws, parent, accept, reject)
        proposed = [p for p in parent.proposed if p.cluster not in set(accept) | set(reject)]
        provenance = Provenance(REVIEW, parent.key, {"new_images": 0, "removed_images": 0, "changed_images": 0,
                                                     "accepted": list(accept), "rejected": list(reject)})
        return save_derived(ws, parent, result, predictor, proposed, {}, run_key or new_run_key(), provenance)
    finally:
        ws.close()
