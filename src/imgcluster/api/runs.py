"""Runs: list, show, delete, compare two, and measure how stable each cluster is."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import NOISE, settle
from ..config import RunConfig
from ..errors import ConfigError, ImgclusterError, WorkspaceNotFound
from ..label import choose_names
from ..run.compare import (
    ABSENT,
    UNSTABLE_BELOW,
    ClusterMatch,
    ClusterParts,
    ClusterStability,
    cluster_stability,
    compare_assignments,
    consensus,
)
from ..store import ImageRecord, RunRecord, Workspace
from ..run import Run
from ..run.outputs import write_report
from ..run.record import stored_run
from ..run.tree import tree_dict
from .steps import StageProgress, fit_clusters, open_workspace, stage_progress

log = logging.getLogger(__name__)



# -- runs: load, list, show, delete, compare, stability -------------------------------------------

def load_run(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None) -> Run:
    """A stored run (when ``key`` is None, the newest run with clusters, else the newest) with its
    images and assignments."""
    ws = open_workspace(path, workspace=workspace, create=False)
    try:
        return stored_run(ws, ws.run(key))
    finally:
        ws.close()


def cluster_tree(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 workspace: str | os.PathLike[str] | None = None, level: str | int | None = None) -> dict[str, Any]:
    """A run's cluster tree (the newest run with clusters when ``key`` is None) as JSON-ready data:
    ``run``, ``stored`` (False: a run saved before trees, whose tree is built now on its map),
    ``linkage``, ``space``, ``default_reason``, ``default``, ``fine`` and ``coarse`` (the clusters of
    those cuts: ``fine`` is the leaves, the run's clusters split where they hold well separated
    parts), ``clusters`` (the run's clusters' node ids), ``root``, and ``nodes`` (id, parent, children, size, height, persistence, name and ``k``, the
    finest cut the node is a cluster of). ``level`` adds ``cut``: the node ids of that cut (see
    ``Run.cut``). The same tree is ``load_run(key).tree``."""
    run = load_run(key, path=path, workspace=workspace)
    found = {"run": run.key, "stored": run.record.tree is not None, **tree_dict(run.tree, run.names)}
    if level is not None:
        found.update(level=str(level), cut=sorted(set(run.cut(level).tolist()) - {NOISE}))
    return found


@dataclass(frozen=True)
class RunSummary:
    """One line of :func:`list_runs`: what a run was and how it scored, without its per-image data.
    ``unstable_clusters`` come from the run's newest stability measurement (None: never measured)."""

    key: str
    created_at: float
    root: str
    model_name: str
    method: str
    seed: int | None
    n_images: int
    n_clusters: int
    noise_fraction: float
    silhouette: float | None
    unstable_clusters: list[int] | None


def list_runs(path: str | os.PathLike[str] | None = None, *,
              workspace: str | os.PathLike[str] | None = None) -> list[RunSummary]:
    """Every run stored in the workspace, newest first (none where there is no workspace yet)."""
    try:
        ws = open_workspace(path, workspace=workspace, create=False)
    except WorkspaceNotFound:
        return []
    try:
        return [_run_summary(record, ws.stability(record.key)) for record in ws.runs()]
    finally:
        ws.close()


def _run_summary(record: RunRecord, measured: Sequence[Mapping[str, Any]]) -> RunSummary:
    metrics = record.metrics
    newest = measured[-1] if measured else None
    unstable = None if newest is None else [c["cluster"] for c in newest["clusters"] if c["unstable"]]
    return RunSummary(record.key, record.created_at, record.root, record.model_name,
                      str(record.config.get("cluster", {}).get("method", "")),
                      record.config.get("reduce", {}).get("seed"), record.n_images, record.n_clusters,
                      float(metrics.get("noise_fraction", 0.0)), metrics.get("silhouette"), unstable)


@dataclass(frozen=True)
class DefaultRun:
    """The run commands use when none is named, and why: ``reason`` reads like "the newest run with
    clusters; newer run X has none"."""

    key: str
    reason: str


def default_run(path: str | os.PathLike[str] | None = None, *,
                workspace: str | os.PathLike[str] | None = None) -> DefaultRun:
    """The run that commands and API calls use when no run is named: the newest run with clusters,
    else (no run has any) the newest run. RunNotFound when the workspace has no run."""
    ws = open_workspace(path, workspace=workspace, create=False)
    try:
        chosen = ws.run()
        counts = ws.run_counts()
    finally:
        ws.close()
    keys = [key for key, _, _ in counts]
    newer = keys[:keys.index(chosen.key)]
    if chosen.n_clusters == 0:
        reason = "the newest run; no run has clusters"
    elif newer:
        shown = ", ".join(newer[:3]) + (" …" if len(newer) > 3 else "")
        many = len(newer) > 1
        reason = (f"the newest run with clusters; newer run{'s' if many else ''} {shown} "
                  f"{'have' if many else 'has'} none")
    else:
        reason = "the newest run"
    log.info("using run %s (%s)", chosen.key, reason)
    return DefaultRun(chosen.key, reason)


def run_info(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
             workspace: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Everything stored about a run (see :func:`default_run` when ``key`` is None) as JSON-ready data: the resolved
    config (automatic choices included) and the config as requested, the model, package versions,
    timings per stage, metrics, clusters with their shown names, evaluations, stability measurements
    and the run's files. Per-image assignments are left out (see :func:`load_run`)."""
    ws = open_workspace(path, workspace=workspace, create=False)
    try:
        record = ws.run(key)
        names = choose_names(ws.names(record.key))
        evaluations, measured = ws.evaluations(record.key), ws.stability(record.key)
        folder = ws.run_dir(record.key)
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        return {"key": record.key, "created_at": record.created_at, "root": record.root, "workspace": str(ws.path),
                "model_id": record.model_id, "model_name": record.model_name, "n_images": record.n_images,
                "n_clusters": record.n_clusters, "config": record.config, **record.as_info(),
                "names": {str(c): dict(dataclasses.asdict(n), level=n.level) for c, n in sorted(names.items())},
                "evaluations": evaluations, "stability": measured, "files": [str(p) for p in files]}
    finally:
        ws.close()


def delete_run(key: str, *, path: str | os.PathLike[str] | None = None,
               workspace: str | os.PathLike[str] | None = None) -> RunRecord:
    """Delete a run for good: its catalogue rows (assignments, names, evaluations, stability) and its
    folder ``WORKSPACE/runs/<key>/``. Embeddings, thumbnails and other runs stay. Returns the deleted
    record; an unknown key raises RunNotFound listing the recent runs."""
    if not key:
        raise ConfigError("Name the run to delete; `imgcluster runs list` shows the keys.")
    ws = open_workspace(path, workspace=workspace, create=False)
    try:
        ws.lock()
        record = ws.delete_run(key)
        log.info("deleted run %s and %s", key, ws.run_dir(key))
        return record
    finally:
        ws.close()


def discard_unsaved_run(key: str, *, path: str | os.PathLike[str] | None = None,
                        workspace: str | os.PathLike[str] | None = None) -> bool:
    """Remove the half-written folder ``runs/<key>/`` that a command killed while saving the run left
    (no run of that key exists); True when there was one. A saved run is never touched."""
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        removed = ws.discard_unsaved_run(key)
        if removed:
            log.info("removed the half-written run folder %s", ws.run_dir(key))
        return removed
    finally:
        ws.close()


@dataclass(frozen=True)
class MovedImage:
    """An image whose cluster in run B is not the cluster of B its cluster of A was matched with."""

    image_id: int
    path: str
    cluster_a: int
    cluster_b: int


@dataclass(frozen=True)
class RunComparison:
    """How two runs agree over the images both clustered (``n_common``; ``only_a``/``only_b`` are in
    one run only). Unclustered (-1) counts as one more cluster in ARI, NMI, variation of information
    (nats) and the contingency table (rows: ``clusters_a``, columns: ``clusters_b``). ``matching`` is
    the best one-to-one pairing by Jaccard; ``splits`` are clusters of A whose images went to several
    clusters of B, ``merges`` clusters of B that took in several clusters of A (each part at least
    20% of the cluster it comes from and 5 images); ``moved`` the images not in their matched cluster."""

    a: str
    b: str
    n_common: int
    only_a: int
    only_b: int
    ari: float
    nmi: float
    variation_of_information: float
    clusters_a: list[int]
    clusters_b: list[int]
    contingency: list[list[int]]
    matching: list[ClusterMatch]
    splits: list[ClusterParts]
    merges: list[ClusterParts]
    moved: list[MovedImage]

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready data."""
        return dataclasses.asdict(self)


def compare_runs(a: str, b: str, *, path: str | os.PathLike[str] | None = None,
                 workspace: str | os.PathLike[str] | None = None, level: str | int | None = None) -> RunComparison:
    """Compare run ``a`` with run ``b`` over the images both clustered: ARI, NMI, variation of
    information, contingency table, best one-to-one cluster matching, splits, merges and moved images.
    ``level`` compares both runs cut at that level of their trees (see ``Run.cut``; a number of
    clusters must suit both)."""
    run_a, run_b = (load_run(key, path=path, workspace=workspace).at_level(level) for key in (a, b))
    ids_a, ids_b = np.asarray(run_a.assignments.image_ids), np.asarray(run_b.assignments.image_ids)
    common, rows_a, rows_b = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    if not len(common):
        raise ConfigError(f"Runs {run_a.key} ({run_a.record.root}) and {run_b.key} ({run_b.record.root}) share no "
                          "image; compare two runs of the same folder.")
    labels_a = np.asarray(run_a.assignments.clusters)[rows_a]
    labels_b = np.asarray(run_b.assignments.clusters)[rows_b]
    result = compare_assignments(labels_a, labels_b)
    paths = {r.id: r.path for r in run_a.images}
    moved = [MovedImage(int(common[i]), paths[int(common[i])], int(labels_a[i]), int(labels_b[i]))
             for i in np.flatnonzero(result.moved)]
    return RunComparison(run_a.key, run_b.key, len(common), len(ids_a) - len(common), len(ids_b) - len(common),
                         result.ari, result.nmi, result.variation_of_information, result.clusters_a,
                         result.clusters_b, result.contingency.tolist(), result.matching, result.splits,
                         result.merges, moved)


@dataclass(frozen=True)
class Stability:
    """How stable a run's clusters are (see :func:`stability`): per cluster, the mean over refits of its
    best Jaccard with any cluster of the refit; clusters below ``threshold`` are ``unstable``.
    ``repeat_ari`` is each refit's ARI with the run over the images it saw. ``consensus`` (n,) is each
    image's majority cluster over the run and its refits, aligned with ``image_ids``, and ``agreement``
    (n,) the share of those clusterings that voted for it."""

    run: str
    repeats: int
    seeds: list[int]
    subsample: float | None
    threshold: float
    clusters: list[ClusterStability]
    repeat_ari: list[float]
    image_ids: np.ndarray
    consensus: np.ndarray
    agreement: np.ndarray
    changed: int
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def unstable(self) -> list[int]:
        """The clusters whose stability is below ``threshold``, least stable first."""
        return [c.cluster for c in sorted(self.clusters, key=lambda c: c.stability) if c.stability < self.threshold]

    def to_dict(self) -> dict[str, Any]:
        """The measurement as stored beside the run: everything but the per-image arrays."""
        return {"run": self.run, "repeats": self.repeats, "seeds": self.seeds, "subsample": self.subsample,
                "threshold": self.threshold, "repeat_ari": self.repeat_ari, "changed": self.changed,
                "mean_agreement": float(self.agreement.mean()) if len(self.agreement) else 1.0,
                "seconds": round(self.seconds, 3), "unstable_clusters": self.unstable,
                "clusters": [dict(dataclasses.asdict(c), unstable=c.stability < self.threshold)
                             for c in self.clusters],
                "outputs": {name: str(p) for name, p in self.outputs.items()}}


def stability(path: str | os.PathLike[str] | None = None, *, run: str | None = None, repeats: int = 5,
              subsample: float | None = None, workspace: str | os.PathLike[str] | None = None,
              progress: StageProgress | None = None) -> Stability:
    """Refit a run (the newest with clusters when ``run`` is None) ``repeats`` times with other seeds and measure how
    stable each of its clusters is; store the result beside the run, write the consensus assignment
    to ``runs/<key>/consensus.csv`` and rewrite the run's report with unstable clusters flagged.

    Each refit uses the run's resolved config and its stored embeddings (nothing is embedded again)
    with the seeds after the run's own (seed s: s+1 … s+repeats, so no refit copies the run), each on
    a random ``subsample`` share of the images when given. The consensus relabels every refit onto
    the run's clusters (Hungarian matching on the contingency table) and takes each image's majority
    vote, the run's own cluster winning ties: memory grows with images x repeats, never images²."""
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1; got {repeats}. 5-10 refits give a usable estimate.")
    if subsample is not None and not 0.0 < subsample <= 1.0:
        raise ConfigError(f"subsample (the share of images each refit sees) must be between 0 and 1 (above 0), "
                          f"e.g. 0.8; got {subsample}.")
    reference = load_run(run, path=path, workspace=workspace)
    config = RunConfig.from_dict(reference.record.config)
    ws = Workspace.open(reference.workspace)
    try:
        ws.lock()
        started = time.perf_counter()
        vectors = _run_vectors(ws, reference)
        labels = np.asarray(reference.assignments.clusters, dtype=np.int64)
        seeds = [config.reduce.seed + 1 + i for i in range(repeats)]
        refits = []
        for done, seed in enumerate(seeds):
            refits.append(_refit(vectors, config, seed, subsample))
            stage_progress(progress)("refit")(done + 1, repeats)
        agreed = consensus(labels, refits)
        table = _consensus_csv(reference.images, labels, agreed.labels, agreed.agreement)
        outputs = {"consensus": ws.write_run_file(reference.key, "consensus.csv", table),
                   "report": ws.run_dir(reference.key) / "report.html"}
        measured = Stability(
            reference.key, repeats, seeds, subsample, UNSTABLE_BELOW, cluster_stability(labels, refits),
            [_seen_ari(labels, refit) for refit in refits], np.asarray(reference.assignments.image_ids),
            agreed.labels, agreed.agreement, int((agreed.labels != labels).sum()), time.perf_counter() - started,
            outputs)
        ws.save_stability(reference.key, measured.to_dict())
        write_report(ws, reference.record, reference.images, reference.assignments, reference.skipped,
                      reference.names)
        log.info("run %s: stability over %d refits in %.1f s; unstable clusters: %s", reference.key, repeats,
                 measured.seconds, measured.unstable or "none")
        return measured
    finally:
        ws.close()


def _run_vectors(ws: Workspace, run: Run) -> np.ndarray:
    """The stored embeddings of a run's images, in its order."""
    try:
        return ws.load_embeddings(run.record.model_id, [r.content_hash for r in run.images])  # type: ignore[misc]
    except KeyError:
        raise ImgclusterError(
            f"Some images of run {run.key} have no {run.record.model_name} embedding in {ws.path} any more (they "
            "changed since the run). Run `imgcluster cluster` again and measure the new run.") from None


def _refit(vectors: np.ndarray, config: RunConfig, seed: int, subsample: float | None) -> np.ndarray:
    """Labels (n,) of one refit with ``seed``; ``ABSENT`` for images left out of its subsample."""
    n = len(vectors)
    rows = np.arange(n)
    if subsample is not None and subsample < 1.0:
        size = min(n, max(2, round(subsample * n)))
        rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    # The refit's 2-D map is thrown away: PCA makes it nearly free where UMAP would cost a second fit.
    reduce_config = dataclasses.replace(config.reduce, seed=seed, map_method="pca")
    # lenient: a run stored before settings were checked against the method may hold ones it ignored.
    cluster_config = settle(dataclasses.replace(config.cluster, seed=seed), config.preset, lenient=True)
    _, clustering = fit_clusters(vectors[rows], reduce_config, cluster_config)
    labels = np.full(n, ABSENT, dtype=np.int64)
    labels[rows] = clustering.labels
    return labels


def _seen_ari(reference: np.ndarray, refit: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    seen = refit != ABSENT
    return round(float(adjusted_rand_score(reference[seen], refit[seen])), 4)


def _consensus_csv(images: Sequence[ImageRecord], clusters: np.ndarray, agreed: np.ndarray,
                   agreement: np.ndarray) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "cluster", "consensus", "agreement"])
    writer.writerows(zip([r.path for r in images], clusters.tolist(), agreed.tolist(),
                         np.round(agreement, 3).tolist()))
    return buffer.getvalue()
