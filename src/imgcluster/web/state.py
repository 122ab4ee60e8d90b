"""What the server keeps between requests: one read connection to the workspace (behind a lock),
and per run its assignment arrays, map bytes and loaded predictor. Runs never change once saved
(edits make new runs), so nothing here needs invalidating except names, which are read each time."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..api import RunPredictor, load_predictor
from ..cluster import NOISE
from ..errors import WorkspaceDamaged, WorkspaceTooNew
from ..palette import map_colours
from ..run.tree import image_leaves, leaf_parts, stored_tree
from ..store import RunRecord, Workspace
from ..store.browse import assignment_arrays, assignment_how
from .atlas import PER_SHEET, tile_order

T = TypeVar("T")


@dataclass
class RunView:
    """A run's per-image arrays, sorted by image id (as the store returns them)."""

    record: RunRecord
    image_ids: np.ndarray        # (n,) int64, ascending
    clusters: np.ndarray         # (n,) int64
    membership_probability: np.ndarray  # (n,) float64
    x: np.ndarray
    y: np.ndarray
    _members: dict[int, np.ndarray] = field(default_factory=dict)
    _map: bytes | None = None
    leaves: bytes | None = None  # each map point's leaf (run/tree.py leaf_parts, map order), built on first request
    _order: np.ndarray | None = None
    facets: bytes | None = None  # web/facets.py's body, built on first request
    facets_build: Future[bytes] | None = None  # that build while it runs (routers/facets.py)
    _colours: dict[int, str] | None = None

    def row_of(self, image_id: int) -> int | None:
        row = int(np.searchsorted(self.image_ids, image_id))
        return row if row < len(self.image_ids) and self.image_ids[row] == image_id else None

    def members(self, cluster: int) -> np.ndarray:
        """Rows of a cluster's images, most probable members first (then by id)."""
        if cluster not in self._members:
            rows = np.flatnonzero(self.clusters == cluster)
            self._members[cluster] = rows[np.lexsort((self.image_ids[rows], -self.membership_probability[rows]))]
        return self._members[cluster]

    @property
    def order(self) -> np.ndarray:
        """Rows in the map's Z-order, the order the map and the atlas's sprite sheets use."""
        if self._order is None:
            self._order = tile_order(self.x, self.y)
        return self._order

    @property
    def colours(self) -> dict[int, str]:
        """Each cluster's colour, as the report colours it: the run's stored colours, or for a run
        saved before they were kept, palette.map_colours on its map (once per server)."""
        if self._colours is None:
            self._colours = (self.record.colours if self.record.colours is not None
                             else map_colours(self.x, self.y, self.clusters))
        return self._colours

    def map_bytes(self) -> bytes:
        """The map as one binary body, points in Z-order: x, y (float32, n each), cluster, image id
        (int32, n each)."""
        if self._map is None:
            rows = self.order
            self._map = b"".join(np.ascontiguousarray(a).tobytes() for a in (
                self.x[rows].astype(np.float32), self.y[rows].astype(np.float32),
                self.clusters[rows].astype(np.int32), self.image_ids[rows].astype(np.int32)))
        return self._map

    def sheet_ids(self, sheet: int) -> list[int]:
        """Image ids on sprite sheet ``sheet`` (empty past the last one)."""
        return self.image_ids[self.order[sheet * PER_SHEET:(sheet + 1) * PER_SHEET]].tolist()


class Explorer:
    """The workspace as the web app sees it. Reads go through :meth:`db` (one connection, one thread
    at a time); edits go through the API functions, which open their own writer."""

    def __init__(self, workspace: str | Path, device: str = "auto"):
        self.workspace = Path(workspace).expanduser().resolve()
        self.device = device
        self._ws: Workspace | None = None
        with contextlib.suppress(WorkspaceDamaged, WorkspaceTooNew):
            self._ws = Workspace.open(self.workspace, create=False)  # else each request says what is wrong
        self._lock = threading.RLock()
        self._views: dict[str, RunView] = {}
        self._predictors: dict[str, RunPredictor] = {}
        self._predictor_lock = threading.Lock()
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="imgcluster-model")

    def close(self) -> None:
        self._model_thread.shutdown(wait=False)
        if self._ws is not None:
            self._ws.close()

    @contextlib.contextmanager
    def db(self) -> Iterator[Workspace]:
        with self._lock:
            yield self._open()

    def _open(self) -> Workspace:
        """The read connection; opened on first use when the workspace was damaged at start (a
        request then gets WorkspaceDamaged, 503, until `imgcluster doctor --repair` mends it)."""
        if self._ws is None:
            self._ws = Workspace.open(self.workspace, create=False)
        return self._ws

    def record(self, key: str | None) -> RunRecord:
        """The run ``key`` (the newest with clusters when None); RunNotFound for an unknown key."""
        with self.db() as ws:
            return ws.run(key or None)

    def view(self, key: str | None) -> RunView:
        """A run's arrays, read once per server (a run never changes; its assignments file of
        columns loads in milliseconds even at 1M images)."""
        record = self.record(key)
        with self._lock:
            if record.key not in self._views:
                table = assignment_arrays(self._open(), record.key)
                self._views[record.key] = RunView(record, table["image_id"], table["cluster"],
                                                  table["membership_probability"], table["x"], table["y"])
            return self._views[record.key]

    def leaf_bytes(self, key: str | None) -> bytes:
        """Each point's leaf of the run's tree, in the map's order, as its place among its cluster's
        leaves (one uint8 a point; see ``leaf_parts``): what the page needs to cut below the clusters."""
        view = self.view(key)
        with self.db() as ws:
            if view.leaves is None:
                assignments = ws.assignments(view.record.key)
                tree = stored_tree(view.record, assignments)
                view.leaves = leaf_parts(tree, image_leaves(assignments, tree))[view.order].tobytes()
            return view.leaves

    def colours(self, record: RunRecord) -> dict[int, str]:
        """Each cluster's colour in the run: stored with it, so a fresh server's cluster list reads no
        per-image arrays (a run saved before colours were kept reads them, see ``RunView.colours``)."""
        return record.colours if record.colours is not None else self.view(record.key).colours

    def how(self, view: RunView, image_ids: list[int]) -> dict[int, str]:
        """How each image got its cluster in the run (fit, filed, attached, moved …)."""
        with self.db() as ws:
            return assignment_how(ws, view.record.key, image_ids)

    def predictor(self, key: str | None) -> RunPredictor:
        """The run's predictor, loaded once; its model loads on first use."""
        record = self.record(key)
        with self._predictor_lock:
            if record.key not in self._predictors:
                self._predictors[record.key] = load_predictor(record.key, workspace=self.workspace,
                                                              device=self.device)
            return self._predictors[record.key]

    def on_model_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run a call that uses the model on the one thread kept for it. Requests arrive on any of
        the server's worker threads, and torch's OpenMP pool per calling thread made filing an
        upload 10x slower on 2 cores (1.8 s instead of 0.15 s); one thread also serialises the lazy
        model load."""
        return self._model_thread.submit(function, *args).result()


def cluster_label(cluster: int, name: str | None) -> str:
    if cluster == NOISE:
        return "unclustered"
    return name or f"cluster {cluster}"
