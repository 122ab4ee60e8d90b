"""Naming a run's clusters (namers, manual names) and exporting the named clusters."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .. import export as export_stage
from ..cluster import NOISE
from ..config import NameConfig
from ..embed import load_model, normalise
from ..embed.base import Embedder
from ..errors import ConfigError, UnknownName
from ..label import (
    MANUAL,
    ClusterView,
    NamingContext,
    check_namer,
    choose_names,
    make_namer,
    resolve_namer,
)
from ..label.base import sample_by_hash
from ..label.vocabulary import load_vocabulary
from ..run import Naming, Run
from ..run.derive import kept_names
from ..run.outputs import assignment_table, write_outputs
from ..store import Assignments, ClusterName, ImageRecord, RunRecord, Workspace
from .runs import load_run
from .steps import Embeddings, Progress, open_workspace, progress_for, reload_run_model

log = logging.getLogger(__name__)



# -- names --------------------------------------------------------------------------------------

def name_new_run(ws: Workspace, record: RunRecord, embedded: Embeddings, assignments: Assignments,
                  config: NameConfig, progress: Progress | None = None) -> tuple[list[ClusterName], Naming]:
    """Name a new run's clusters with its configured namer; when ``auto`` chose zero-shot and that
    fails, the ImageNet head stands in. A failure leaves the clusters numbered, is logged and
    recorded in the returned ``Naming`` (kept with the run), and never costs the run.

    ``progress(done, total)`` starts at (0, clusters to name), follows the namer (clusters named, or
    its own steps) and ends at its total whatever the namer did. A run that follows another keeps
    the names of clusters that barely changed (``run.derive.kept_names``): they are not named again."""
    namer = resolve_namer(config.namer, embedded.model)
    keep = {cluster: name.name for cluster, name in choose_names(kept_names(ws, record.provenance)).items()}
    errors: dict[str, str] = {}
    names: list[ClusterName] = []
    latest = [sum(1 for c in record.clusters if c.cluster != NOISE)]  # the total shown last

    def report(done: int, total: int) -> None:
        latest[0] = total
        if progress is not None:
            progress(done, total)

    report(0, latest[0])  # loading the namer's model comes first, and can take seconds
    for attempt in [namer] + (["imagenet"] if config.namer == "auto" and namer == "zero-shot" else []):
        try:
            names = run_namer(ws, record, embedded.images, assignments, config, attempt, vectors=embedded.vectors,
                               progress=report, keep=keep)
            break
        except Exception as error:  # hours of embedding must not be lost to a namer
            log.warning("Naming the clusters with %s failed (%s).", attempt, error,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            errors[attempt] = str(error)
    named_by = names[0].source if names else None
    if errors:
        log.warning("%s", f"The clusters are named by {named_by}." if names else
                    "The clusters keep their numbers; try another namer with `imgcluster names --namer NAMER`.")
    report(latest[0], latest[0])
    return names, Naming(namer, errors, named_by if errors else None)


def run_namer(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
               config: NameConfig, namer_name: str, vectors: np.ndarray | None = None,
               clusters: Sequence[int] | None = None, api_key: str | None = None,
               progress: Progress | None = None, keep: Mapping[int, str] | None = None) -> list[ClusterName]:
    """``namer_name``'s names for ``record``'s clusters (``clusters``: only those). ``keep`` maps
    clusters to texts they keep (see ``name_new_run``): they get no new name, and a namer that can
    (one whose ``name`` takes ``keep``) tells its names apart from theirs. Naming only some clusters
    (an update's proposals, ``imgcluster names --clusters``), such a namer keeps the names the
    others show (``_shown_names``) and tells its new names apart from them."""
    namer = make_namer(namer_name, config, _naming_context(ws, record, api_key))
    if not getattr(namer, "needs_embeddings", False):
        vectors = None
    elif vectors is None:
        vectors = ws.load_embeddings(record.model_id, [r.content_hash for r in images])  # type: ignore[misc]
    keep = dict(keep or {})
    takes_keep = _takes(namer.name, "keep")
    if clusters is not None and takes_keep:
        others = {c: text for c, text in _shown_names(ws, record).items() if c not in clusters}
        keep = others | keep
        present = {s.cluster for s in record.clusters}
        clusters = sorted(set(clusters) | (set(keep) & present))  # seen, to be told apart from
    told = {"keep": keep} if keep and takes_keep else {}
    names = namer.name(_cluster_views(ws, record, images, assignments, vectors, clusters),
                       **progress_for(namer.name, progress), **told)
    return [name for name in names if name.cluster not in keep]


def _shown_names(ws: Workspace, record: RunRecord) -> dict[int, str]:
    """The names ``record``'s clusters show: its own stored ones, or for a run not saved yet (an
    update naming its proposals), those of the run it derives from, which it carries over."""
    stored = ws.names(record.key)
    if not stored and record.provenance.parent is not None:
        stored = ws.names(record.provenance.parent)
    return {cluster: name.name for cluster, name in choose_names(stored).items()}


def _takes(method: Callable[..., object], argument: str) -> bool:
    import inspect

    try:
        return argument in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _naming_context(ws: Workspace, record: RunRecord, api_key: str | None = None) -> NamingContext:
    model = record.model or {"name": record.model_name, "model_id": record.model_id}

    @functools.cache
    def embedder() -> Embedder:
        return reload_run_model(record)

    @functools.cache
    def classifier() -> Embedder:
        # The classifier head runs in PyTorch: a run embedded by another backend loads it apart (lazily, cheap).
        torch_made = model.get("family") == "efficientnet" and model.get("backend", "torch") == "torch"
        return embedder() if torch_made else load_model("efficientnet-lite0")

    return NamingContext(model, embedder, classifier, ws, api_key)


def _cluster_views(ws: Workspace, record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
                   vectors: np.ndarray | None, clusters: Sequence[int] | None = None) -> list[ClusterView]:
    """What namers see of each clustered cluster: representatives first (central, probable and
    diverse in turn), then the run's other best members; a sample of members by content hash; and
    the mean embedding when ``vectors``."""
    chosen = {r.cluster: r for r in record.representatives}
    by_id = {r.id: r for r in images}
    labels = np.asarray(assignments.clusters)
    means = _cluster_means(vectors, labels) if vectors is not None else {}
    everyone: dict[int, list[ImageRecord]] = {}
    rows: dict[int, list[int]] = {}
    for row, (image, label) in enumerate(zip(images, labels.tolist())):
        everyone.setdefault(int(label), []).append(image)
        rows.setdefault(int(label), []).append(row)
    views = []
    for summary in record.clusters:
        cluster = summary.cluster
        if cluster == NOISE or (clusters is not None and cluster not in clusters):
            continue
        ids = [i for i, _ in chosen[cluster].ordered()] if cluster in chosen else []
        members = [by_id[i] for i in dict.fromkeys(ids + summary.representatives) if i in by_id]
        pool = everyone.get(cluster, [])
        chosen_rows = sample_by_hash([r.content_hash for r in pool])
        sampled = [pool[i] for i in chosen_rows]
        thumbs = ws.thumbnails({r.content_hash for r in members + sampled if r.content_hash})
        sample = _view(cluster, summary.size, sampled, thumbs, None)
        if vectors is not None and chosen_rows:  # the sample's own embeddings: a zero-shot namer reads each member
            at = [rows[cluster][i] for i in chosen_rows]
            order = np.argsort(at)  # a view on the shards reads in order
            embedded = np.empty((len(at), vectors.shape[1]), dtype=np.float32)
            embedded[order] = np.asarray(vectors[np.asarray(at)[order]], dtype=np.float32)
            sample = dataclasses.replace(sample, embeddings=embedded)
        views.append(dataclasses.replace(_view(cluster, summary.size, members, thumbs, means.get(cluster)),
                                         sample=sample))
    return views


def _view(cluster: int, size: int, members: Sequence[ImageRecord], thumbs: dict[str, bytes],
          mean: np.ndarray | None) -> ClusterView:
    return ClusterView(cluster, size, [r.path for r in members], [r.content_hash or "" for r in members],
                       [thumbs.get(r.content_hash or "") for r in members], mean)


def _cluster_means(vectors: np.ndarray, labels: np.ndarray, batch: int = 20_000) -> dict[int, np.ndarray]:
    """Each cluster's L2-normalised mean embedding, summed a batch of rows at a time (``vectors``
    may be a view on the shards that is never read whole)."""
    ids, dense = np.unique(labels, return_inverse=True)
    dense = dense.reshape(-1)
    sums = np.zeros((len(ids), vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(labels), batch):
        np.add.at(sums, dense[start:start + batch], np.asarray(vectors[start:start + batch], dtype=np.float64))
    means = normalise(sums.astype(np.float32))
    return {int(c): means[i] for i, c in enumerate(ids.tolist()) if c != NOISE}


def name_clusters(key: str | None = None, *, namer: str | None = None, config: NameConfig | None = None,
                  clusters: Sequence[int] | None = None, path: str | os.PathLike[str] | None = None,
                  workspace: str | os.PathLike[str] | None = None, api_key: str | None = None) -> list[ClusterName]:
    """Name a stored run's clusters (the newest run with clusters when ``key`` is None) with a namer, keep the names
    beside the earlier ones (a manual name still wins), and rewrite the run's report and tables.

    ``namer`` overrides ``config.namer``; ``clusters`` limits the naming to those cluster ids;
    ``api_key`` is the VLM's key when IMGCLUSTER_VLM_KEY should not be used. Returns this namer's
    names, one per cluster, with ``error`` set where it failed.
    """
    config = config or NameConfig()
    config = dataclasses.replace(config, namer=namer) if namer is not None else config
    check_namer(config.namer)
    if config.vocabulary is not None:
        load_vocabulary(config.vocabulary)  # a missing or near-empty file fails before the run is read
    run = load_run(key, path=path, workspace=workspace)
    if clusters is not None:
        _check_clusters(run, clusters)
    ws = Workspace.open(run.workspace)
    try:
        ws.lock()
        resolved = resolve_namer(config.namer, run.record.model)
        names = run_namer(ws, run.record, run.images, run.assignments, config, resolved, clusters=clusters,
                           api_key=api_key)
        ws.save_names(run.key, names)
        write_outputs(ws, run.record, run.images, run.assignments, run.skipped, choose_names(ws.names(run.key)))
        return names
    finally:
        ws.close()


def name_cluster(cluster: int, name: str, key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 workspace: str | os.PathLike[str] | None = None) -> ClusterName | None:
    """Give one cluster of a run (the newest with clusters when ``key`` is None) a name of your own; it wins over
    every automatic name and survives report regeneration. An empty ``name`` removes it again.
    Returns the name the cluster shows now (None: it is numbered)."""
    run = load_run(key, path=path, workspace=workspace)
    _check_clusters(run, [cluster])
    name = " ".join(name.split())
    ws = Workspace.open(run.workspace)
    try:
        ws.lock()
        if name:
            ws.save_names(run.key, [ClusterName(cluster, name, MANUAL, 1.0, [(name, 1.0)])])
        else:
            ws.delete_name(run.key, cluster, MANUAL)
        chosen = choose_names(ws.names(run.key))
        write_outputs(ws, run.record, run.images, run.assignments, run.skipped, chosen)
        return chosen.get(cluster)
    finally:
        ws.close()


def cluster_names(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                  workspace: str | os.PathLike[str] | None = None) -> list[ClusterName]:
    """Every stored name of a run's clusters, from every source (``Run.names`` holds the shown ones)."""
    ws = open_workspace(path, workspace=workspace, create=False)
    try:
        return ws.names(ws.run(key).key)
    finally:
        ws.close()


def _check_clusters(run: Run, clusters: Sequence[int]) -> None:
    known = sorted(c.cluster for c in run.clusters() if c.cluster != NOISE)
    unknown = [c for c in clusters if c not in known]
    if unknown:
        shown = ", ".join(map(str, known[:30])) + (" …" if len(known) > 30 else "")
        raise ConfigError(f"Run {run.key} has no cluster {', '.join(map(str, unknown))}; its clusters are: "
                          f"{shown or 'none'}. Unclustered images (-1) cannot be named.")


def export(dest: str | os.PathLike[str], key: str | None = None, *, to: str = "folders", mode: str = "link",
           image_ids: Sequence[int] | None = None, path: str | os.PathLike[str] | None = None,
           workspace: str | os.PathLike[str] | None = None,
           level: str | int | None = None) -> export_stage.ExportResult:
    """Export a run (the newest with clusters when ``key`` is None) to ``dest``, a new or empty folder (a new file
    for csv and parquet). ``to``: folders (one folder per cluster, '03-cats', links by default or
    copies with ``mode="copy"``, unclustered images in 'unclustered/'), fiftyone (data.json and
    labels.json of a FiftyOneImageClassificationDataset pointing at the images), csv or parquet
    (the per-image table with cluster names). ``image_ids``: only these images of the run (a cluster,
    a selection or a filtered view in the web app); unknown ids are refused. ``level`` exports the
    run's tree cut at that level (see ``Run.cut``): clusters are then tree nodes, named from their
    leaves. The user's images are never moved or deleted."""
    if to not in export_stage.FORMATS:
        raise UnknownName(f"No export format called {to!r}. Choose one of: {', '.join(export_stage.FORMATS)}.")
    run = load_run(key, path=path, workspace=workspace).at_level(level)
    names = {cluster: chosen.name for cluster, chosen in run.names.items()}
    ws = Workspace.open(run.workspace) if any(r.source_path is not None for r in run.images) else None

    def frame(record: ImageRecord) -> Callable[[], bytes | None] | None:
        if ws is None or record.source_path is None or record.content_hash is None:
            return None
        return functools.partial(ws.frame_jpeg, record.content_hash)

    images, assignments = _only(run, image_ids)
    rows = [export_stage.ExportRow(r.id, r.path, int(c), float(p), frame(r)) for r, c, p in zip(
        images, np.asarray(assignments.clusters).tolist(), assignments.membership_probability)]
    writers: dict[str, Callable[[], export_stage.ExportResult]] = {
        "folders": lambda: export_stage.export_folders(rows, names, dest, mode),
        "fiftyone": lambda: export_stage.export_fiftyone(rows, names, dest),
        "csv": lambda: export_stage.export_table(
            assignment_table(images, assignments, run.names), dest, "csv"),
        "parquet": lambda: export_stage.export_table(
            assignment_table(images, assignments, run.names), dest, "parquet"),
    }
    try:
        return writers[to]()
    finally:
        if ws is not None:
            ws.close()


def _only(run: Run, image_ids: Sequence[int] | None) -> tuple[list[ImageRecord], Assignments]:
    """The run's images and assignments, or only those of ``image_ids`` (ConfigError names an id the
    run does not hold, or an empty choice)."""
    if image_ids is None:
        return list(run.images), run.assignments
    wanted = np.unique(np.asarray(list(image_ids), dtype=np.int64))
    ids = np.asarray(run.assignments.image_ids, dtype=np.int64)
    unknown = np.setdiff1d(wanted, ids)
    if len(unknown):
        raise ConfigError(f"Run {run.key} has no image with id {', '.join(map(str, unknown[:10].tolist()))}; "
                          "export images of the run.")
    if not len(wanted):
        raise ConfigError("Choose at least one image to export.")
    rows = np.flatnonzero(np.isin(ids, wanted))
    a = run.assignments
    how = None if a.how is None else np.asarray(a.how, dtype=object)[rows]
    return [run.images[r] for r in rows.tolist()], Assignments(
        ids[rows], np.asarray(a.clusters)[rows], np.asarray(a.membership_probability)[rows],
        np.asarray(a.x)[rows], np.asarray(a.y)[rows], how)
