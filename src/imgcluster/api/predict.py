"""Filing new images into a run's clusters with its persisted predictor."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import NOISE
from ..cluster.openset import check_held_quantile
from ..cluster.predictor import SAME_IMAGE, Prediction, Predictor
from ..config import ScanConfig
from ..embed import check_device, normalise
from ..errors import ConfigError, WorkspaceDamaged
from ..label import choose_names
from ..scan import load_rgb, sniff
from ..run.tree import stored_tree
from ..store import Assignments, ClusterName, ClusterTree, RunRecord, damage_message
from .steps import reload_run_model, check_has_clusters, open_workspace

# -- filing new images ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FiledImage:
    """Where a new image goes in a run: ``status`` is assigned, unassigned or skipped; ``name`` is
    the name its cluster shows in the run (None when unclustered or unnamed); ``leaf`` the leaf of the
    run's cluster tree it lands in (its cluster, or the part of it its nearest images of the cluster
    vote for; -1 when unassigned); ``ancestors`` the nodes above that leaf, its parent first and the
    root last (so the image is in each of them, its cluster among them when the leaf is a part of
    it; empty when unassigned). An unassigned image's
    ``held_by`` names the test it failed (far, density, typicality, agreement, group or unclustered: see
    ``imgcluster.cluster.openset``), and ``reason`` says it in words."""

    path: str
    status: str
    cluster: int
    membership_probability: float
    x: float
    y: float
    nearest_path: str | None
    nearest_similarity: float | None
    reason: str
    name: str | None = None
    held_by: str = ""
    ancestors: list[int] = field(default_factory=list)
    leaf: int = NOISE


class RunPredictor:
    """A run's persisted predictor, with the run's model loaded on first use: load once, predict many."""

    def __init__(self, record: RunRecord, predictor: Predictor, paths_by_id: dict[int, str], device: str = "auto",
                 names: Mapping[int, ClusterName] | None = None, tree: ClusterTree | None = None,
                 leaf_by_row: np.ndarray | None = None):
        self.record, self.predictor, self.paths_by_id, self.device = record, predictor, paths_by_id, device
        self.tree = tree if tree is not None else record.tree  # None: no tree, filed images have no ancestors
        # Each predictor row's leaf when the tree's leaves are finer than the clusters (else None).
        self.leaf_by_row = leaf_by_row
        self._parts = ({c: set(self.tree.leaves_under(c)) for c in self.tree.clusters}
                       if leaf_by_row is not None and self.tree is not None else {})
        self.names = dict(names or {})
        self._embedder: Any = None
        # New images pass the checks the run's own images passed (format, size): a 1x1 PNG or an
        # icon the scan skips is not filed through predict or an upload either.
        known = {f.name for f in fields(ScanConfig)}
        self.scan_config = ScanConfig(**{k: v for k, v in record.config.get("scan", {}).items() if k in known})

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = reload_run_model(self.record, self.device)
        return self._embedder

    def cluster_name(self, cluster: int) -> str | None:
        """The name ``cluster`` shows in the run, or None (unclustered or unnamed)."""
        chosen = self.names.get(cluster)
        return chosen.name if chosen is not None and chosen.name else None

    def predict_vectors(self, vectors: np.ndarray) -> Prediction:
        """File L2-normalised embeddings (m, d) of the run's model: the one filing rule that predict,
        update and the web app's upload share (see ``imgcluster.cluster.openset``)."""
        names = {cluster: name for cluster in self.names if (name := self.cluster_name(cluster))}
        return self.predictor.predict(vectors, names)

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], batch_size: int | None = None
                      ) -> list[FiledImage]:
        """Decode, embed and file image files; unreadable ones come back as skipped, with the reason.
        ``batch_size`` unset uses the model's own choice for its device."""
        paths = [str(Path(p).expanduser().resolve()) for p in paths]
        embedder = self.embedder  # outside the per-file guard: a missing model is an error, not a skip
        batch_size = batch_size or embedder.batch_size
        results: dict[str, FiledImage] = {}
        usable: list[str] = []
        vectors: list[np.ndarray] = []
        for start in range(0, len(paths), batch_size):
            pixels = []
            for path in paths[start:start + batch_size]:
                refused = scan_refusal(path, self.scan_config)  # never opens a FIFO or a device
                if refused is not None:
                    results[path] = _skipped_file(path, refused)
                    continue
                try:
                    pixels.append(embedder.preprocess(load_rgb(path, min_side=embedder.input_size)))
                    usable.append(path)
                except Exception as error:  # a damaged file is data, not a crash
                    results[path] = _skipped_file(path, unusable_reason(path, error))
            if pixels:
                vectors.append(normalise(embedder.embed(np.stack(pixels))))
        if usable:
            # Filed together, not per forward batch: images held with their group see the whole batch
            # given, whatever the model's batch size or the files' order.
            prediction = self.predict_vectors(np.concatenate(vectors))
            for i, path in enumerate(usable):
                results[path] = self.filed_image(path, prediction, i)
        return [results[p] for p in paths]

    def filed_image(self, path: str, prediction: Prediction, i: int) -> FiledImage:
        """The ``i``-th point of ``prediction`` as a FiledImage named ``path``."""
        cluster_id = int(prediction.clusters[i])
        leaf = self.leaf(prediction, i)
        return FiledImage(
            path, "assigned" if cluster_id != NOISE else "unassigned", cluster_id,
            float(prediction.membership_probability[i]), float(prediction.x[i]), float(prediction.y[i]),
            self.paths_by_id.get(int(prediction.nearest_image_id[i])), float(prediction.nearest_similarity[i]),
            prediction.reasons[i], self.cluster_name(cluster_id),
            prediction.held_by[i] if prediction.held_by else "", self.ancestors(leaf), leaf)

    def leaf(self, prediction: Prediction, i: int) -> int:
        """The leaf the ``i``-th point of ``prediction`` lands in: its cluster when that is a leaf, the
        stored leaf of the run image it is identical to, else the part its nearest images of the
        cluster vote for, by similarity (-1: unassigned)."""
        cluster = int(prediction.clusters[i])
        inside = self._parts.get(cluster)
        if inside is None or len(inside) == 1 or self.leaf_by_row is None:  # unassigned, or a cluster not split
            return cluster
        rows, weights = prediction.neighbours[i], prediction.weights[i]
        known = rows >= 0
        if prediction.nearest_similarity[i] >= SAME_IMAGE:
            # Identical to a run image: it got that image's stored cluster, so it gets its stored leaf,
            # not a vote of its neighbours, which can differ from it (digits, k-means k=2: 1 in ~100).
            same = np.flatnonzero(known & (self.predictor.image_ids_[np.where(known, rows, 0)]
                                           == prediction.nearest_image_id[i]))
            stored = int(self.leaf_by_row[rows[same[0]]]) if len(same) else NOISE
            if stored in inside:
                return stored
        leaves = np.where(known, self.leaf_by_row[np.where(known, rows, 0)], NOISE)
        votes: dict[int, float] = {}
        for leaf, weight in zip(leaves.tolist(), weights.tolist()):
            if leaf in inside:
                votes[leaf] = votes.get(leaf, 0.0) + weight + 1e-12
        if not votes:  # none of its neighbours is in the cluster it was filed to: the cluster's largest part
            return max(inside, key=lambda leaf: (self.tree.node(leaf).size, -leaf))  # type: ignore[union-attr]
        return max(votes, key=lambda leaf: (votes[leaf], -leaf))

    def ancestors(self, node: int) -> list[int]:
        """The tree nodes above ``node``, its parent first, the root last (empty: unclustered, or no tree)."""
        if self.tree is None or node == NOISE:
            return []
        try:
            return self.tree.ancestors(node)
        except KeyError:  # a cluster the tree does not know (an edit's since): no path to say
            return []


def scan_refusal(path: str, config: ScanConfig) -> str | None:
    """Why the scan would not use the file at ``path`` (the same checks, the same words), or None."""
    sniffed = sniff(path, config)
    if sniffed.status == "ok":
        return None
    if sniffed.status == "video":
        return "a video: scan it with `imgcluster update` so that its key-frames are filed"
    return sniffed.skip_reason or "not usable"


def unusable_reason(path: str, error: Exception) -> str:
    """The scan's own words for a file it would skip, else the decoder's."""
    sniffed = sniff(path)
    return sniffed.skip_reason if sniffed.status != "ok" and sniffed.skip_reason else f"cannot decode: {error}"


def _not_a_file(path: str) -> str:
    """Why ``path`` cannot be filed without opening it (``Path.is_file`` is False for it)."""
    where = Path(path).expanduser()
    if not where.exists():
        return f"{path} does not exist"
    if where.is_dir():
        return f"{path} is a folder, not an image file (a glob such as {where / '*.jpg'} gives its images)"
    return f"{path} is not a regular file (a pipe, socket or device)"


def _skipped_file(path: str, reason: str) -> FiledImage:
    return FiledImage(path, "skipped", NOISE, 0.0, float("nan"), float("nan"), None, None, reason)


def load_predictor(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                   workspace: str | os.PathLike[str] | None = None, device: str = "auto",
                   require_clusters: bool = False, held_quantile: float | None = None) -> RunPredictor:
    """The persisted predictor of a run (when ``key`` is None, the newest run with clusters), ready to
    file new images. ``require_clusters`` refuses a run without clusters (ConfigError naming the
    runs that have some) instead of filing every image as unassigned. ``held_quantile`` overrides
    the run's stored one (``ClusterConfig.held_quantile``; 0 files by the nearest-image vote alone)."""
    check_held_quantile(held_quantile)
    ws = open_workspace(path, workspace=workspace, create=False)
    try:
        record = ws.run(key)
        if require_clusters:
            check_has_clusters(ws, record)
        arrays, index_file, params = ws.read_predictor(record.key)
        try:
            predictor = Predictor.from_state(arrays, index_file, params)
        except (RuntimeError, ValueError, KeyError) as error:  # faiss raises RuntimeError on a damaged file
            raise WorkspaceDamaged(damage_message(ws.path, f"run {record.key}'s predictor index {index_file} "
                                                  f"cannot be read ({str(error).strip().splitlines()[0]})")) from None
        if held_quantile is not None:
            predictor.held_quantile = held_quantile
        paths_by_id = {r.id: r.path for r in ws.images(ids=predictor.image_ids_.tolist())}
        names = choose_names(ws.names(record.key))
        tree, leaf_by_row = record.tree, None
        if tree is None:  # the assignments read once, and only when needed
            tree = stored_tree(record, ws.assignments(record.key))  # built on the map: no finer leaves
        elif len(tree.leaves) > tree.n_clusters:
            leaf_by_row = rows_leaves(predictor, ws.assignments(record.key))
    finally:
        ws.close()
    return RunPredictor(record, predictor, paths_by_id, device, names, tree, leaf_by_row)


def rows_leaves(predictor: Predictor, assignments: Assignments) -> np.ndarray:
    """Each predictor row's leaf of the run's cluster tree (-1: an image the run no longer holds)."""
    ids, leaves = np.asarray(assignments.image_ids), np.asarray(assignments.leaf_per_image())
    at = np.clip(np.searchsorted(ids, predictor.image_ids_), 0, max(len(ids) - 1, 0))  # ids are sorted
    found = (ids[at] == predictor.image_ids_) if len(ids) else np.zeros(len(predictor.image_ids_), bool)
    return np.where(found, leaves[at] if len(ids) else NOISE, NOISE)


def predict(paths: Sequence[str | os.PathLike[str]], *, run: str | None = None,
            path: str | os.PathLike[str] | None = None, workspace: str | os.PathLike[str] | None = None,
            device: str = "auto", held_quantile: float | None = None) -> list[FiledImage]:
    """File image files into a run's clusters without refitting: run ``run``, or when None the newest
    run with clusters. A run without clusters is refused (ConfigError naming the runs that have some),
    and so, before any work, is a path that is missing or not a regular file. An image unlike the
    cluster its nearest images vote for is held (status unassigned), the reason naming the test it
    failed; ``held_quantile`` overrides the run's stored bar."""
    for file in paths:
        if not Path(file).expanduser().is_file():
            raise ConfigError(f"{_not_a_file(str(file))}. Give image files to file into the run.")
    check_device(device)
    return load_predictor(run, path=path, workspace=workspace, device=device, require_clusters=True,
                          held_quantile=held_quantile).predict_files(paths)
