"""Plain records that cross the store boundary."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One file of the catalogue. ``status`` is ok, skipped or missing."""

    # slots: a collection holds one record per image, and a __dict__ each cost ~0.2 GB at 1M images.

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    format: str | None
    width: int | None
    height: int | None
    status: str
    skip_stage: str | None = None
    skip_reason: str | None = None
    # A key-frame of a video: the video's path, the frame's time in seconds and its shot (0-based).
    source_path: str | None = None
    timestamp: float | None = None
    shot: int | None = None
    video_params: str | None = None  # a video's row: the settings its key-frames were extracted with

    def describe(self, name: str | None = None) -> str:
        """How a person would name this item: the file, or "frame of VIDEO at mm:ss" (``name``: the
        file or video as it should be shown, e.g. relative to the clustered folder)."""
        if self.source_path is None or self.timestamp is None:
            return name if name is not None else self.path
        return f"frame of {name if name is not None else self.source_path} at {clock(self.timestamp)}"


def clock(seconds: float) -> str:
    """A time in a video as mm:ss (h:mm:ss from an hour)."""
    whole = int(seconds)
    hours, minutes, secs = whole // 3600, whole // 60 % 60, whole % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class ScannedFile:
    """What scanning learned about a file, before it has a catalogue id."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    format: str | None
    width: int | None
    height: int | None
    status: str
    skip_stage: str | None = None
    skip_reason: str | None = None
    source_path: str | None = None
    timestamp: float | None = None
    shot: int | None = None
    video_params: str | None = None


NOISE = -1  # the cluster id of unclustered images (as cluster.NOISE; the store imports no stage)
KINDS = ("central", "probable", "diverse")  # kinds of representative image, in the order they are shown

# How a run came to be (``Provenance.how``): fitted, or derived from another run.
FIT, UPDATE, REVIEW, EDIT, FOLLOW = "fit", "update", "review", "edit", "follow"
HOWS = (FIT, UPDATE, REVIEW, EDIT, FOLLOW)
# The stored form of a run's results (``runs.info``). Format 1 (before schema version 8) was a loose
# dict whose derivations sat under "update", "edit" or clustering["follows"]; ``RunRecord.from_stored``
# reads both.
RESULTS_FORMAT = 2


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster of a run: its id, size and representative images (catalogue ids, best first)."""

    cluster: int
    size: int
    mean_membership_probability: float
    representatives: list[int]

    @property
    def name(self) -> str:
        return "unclustered" if self.cluster == NOISE else f"cluster {self.cluster}"


@dataclass(frozen=True)
class Representatives:
    """One cluster's representative images (catalogue ids, best first) of each kind."""

    cluster: int
    central: list[int] = field(default_factory=list)
    probable: list[int] = field(default_factory=list)
    diverse: list[int] = field(default_factory=list)

    def ordered(self, per_kind: int | None = None) -> list[tuple[int, tuple[str, ...]]]:
        """(image id, its kinds) taking the first ``per_kind`` of each kind in turn (central, probable,
        diverse); each image once, with every kind it is among (central and probable often agree)."""
        lists = [getattr(self, kind)[:per_kind] for kind in KINDS]
        kinds_of = {i: tuple(kind for kind, ids in zip(KINDS, lists) if i in ids) for ids in lists for i in ids}
        seen: dict[int, tuple[str, ...]] = {}
        for rank in range(max((len(ids) for ids in lists), default=0)):
            for ids in lists:
                if rank < len(ids):
                    seen.setdefault(ids[rank], kinds_of[ids[rank]])
        return list(seen.items())


@dataclass(frozen=True)
class ProposedCluster:
    """A dense group among held and unclustered images, offered as a new cluster."""

    cluster: int
    size: int
    new_images: int         # of them, images filed by this update
    representatives: list[int]
    parent: int | None = None  # the cluster tree's node it attaches under (None: no tree, or the root alone)


@dataclass(frozen=True)
class TreeNode:
    """One node of a run's cluster tree. A leaf (no ``children``) is one of the run's clusters, under
    its id; an inner node is a merge of its children. ``height`` is the linkage distance at which the
    node formed (0 for a leaf); ``persistence`` the span of heights over which it stays a cluster,
    (parent's height - its own) over the root's height, in [0, 1] (the root: 1)."""

    id: int
    parent: int | None
    children: list[int]
    size: int
    height: float
    persistence: float


@dataclass(frozen=True)
class ClusterTree:
    """A run's clusters at every scale. The leaves are the run's clusters, or parts of them where a
    cluster was split (a split cluster is the inner node its parts merge up to, under the cluster's
    id); inner nodes merge them up to one root (other ids after the largest leaf id, in merge order).
    Unclustered images are in no node. ``linkage`` names how leaves were merged, ``space`` where
    (clustering or map); ``default`` is the number of the run's clusters (None: a tree saved before
    leaves finer than them, whose leaves are the clusters); ``coarse`` the number of clusters of the
    coarse cut; ``default_reason`` why the default cut (the run's own clusters) is what it is.

    A cut at k clusters undoes the last k - 1 merges: the nodes that are clusters after the first
    n_leaves - k merges. Merges inside clusters come first, so the cut at ``default`` is the run's clusters."""

    nodes: list[TreeNode]
    linkage: str = "average"
    space: str = "clustering"
    coarse: int = 1
    default_reason: str = ""
    default: int | None = None

    @property
    def n_clusters(self) -> int:
        """The number of the run's clusters: the clusters of the default cut."""
        return len(self.leaves) if self.default is None else self.default

    @functools.cached_property
    def clusters(self) -> list[int]:
        """The run's clusters (the default cut's node ids), ascending."""
        return self.cut(self.n_clusters) if self.nodes else []

    @property
    def leaves(self) -> list[int]:
        """The leaf ids (the run's clusters, or their parts where a cluster was split), ascending."""
        return [n.id for n in self.nodes if not n.children]

    @property
    def merges(self) -> list[int]:
        """The inner node ids in merge order (the root last)."""
        return [n.id for n in self.nodes if n.children]

    @property
    def root(self) -> int | None:
        """The node that holds every clustered image (None: a run without clusters)."""
        return next((n.id for n in self.nodes if n.parent is None), None)

    @functools.cached_property
    def _by_id(self) -> dict[int, TreeNode]:
        return {n.id: n for n in self.nodes}

    def node(self, node: int) -> TreeNode:
        """The node with id ``node`` (KeyError when none is)."""
        return self._by_id[node]

    def leaves_under(self, node: int) -> list[int]:
        """The leaves at or below ``node``, ascending."""
        found, todo = [], [node]
        while todo:
            at = self._by_id[todo.pop()]
            found.extend([at.id] if not at.children else [])
            todo.extend(at.children)
        return sorted(found)

    def ancestors(self, node: int) -> list[int]:
        """The nodes above ``node``, its parent first, the root last."""
        path, at = [], self._by_id[node].parent
        while at is not None:
            path.append(at)
            at = self._by_id[at].parent
        return path

    def cut(self, k: int) -> list[int]:
        """The node ids that are the clusters of the cut at ``k`` clusters (1 <= k <= number of leaves)."""
        leaves, merges = self.leaves, self.merges
        if not 1 <= k <= max(1, len(leaves)):
            raise ValueError(f"k must be between 1 and {len(leaves)}; got {k}")
        alive = set(leaves)
        for node in merges[:len(leaves) - k]:
            alive -= set(self.node(node).children)
            alive.add(node)
        return sorted(alive)

    def k_at(self, node: int) -> int:
        """The largest number of clusters at which ``node`` is one of them (a leaf: every leaf)."""
        merges = self.merges
        return len(self.leaves) - (merges.index(node) + 1 if node in merges else 0)

    def to_dict(self) -> dict[str, Any]:
        """The tree as JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClusterTree":
        """A tree from ``to_dict``'s data (keys a later version added are left out)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"nodes"}
        fields = {k: v for k, v in data.items() if k in known}
        return cls([TreeNode(**n) for n in data.get("nodes") or []], **fields)


@dataclass(frozen=True)
class Naming:
    """Which namer named a run's clusters; ``errors`` by namer when one failed, and then ``named_by``
    (the source that named them in the end, None: they stay numbered)."""

    namer: str | None
    errors: dict[str, str] = field(default_factory=dict)
    named_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        failed = {"errors": dict(self.errors), "named_by": self.named_by} if self.errors else {}
        return {"namer": self.namer, **failed}


@dataclass(frozen=True)
class Embedded:
    """How many of a run's images were embedded for it (``new``) and how many came from the cache."""

    new: int = 0
    cached: int = 0


@dataclass(frozen=True)
class Provenance:
    """How a run came to be: ``how`` is fit, update, review, edit or follow (see ``HOWS``); ``parent``
    the run it was derived from (follow: the run whose ids it keeps). ``details`` is what the
    derivation recorded: update: new_images, removed_images, changed_images; review: accepted,
    rejected; edit: action and its arguments; follow: shared_images, matched, new_clusters, ended."""

    how: str = FIT
    parent: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """A finished clustering run: what was done, with what, and how it scored.

    ``config`` is the resolved configuration (automatic choices included), ``requested_config`` the
    one asked for; ``model`` describes the embedder; ``clustering`` the fitted clusterer; ``metrics``
    the internal scores; ``clusters`` and ``representatives`` one entry per cluster; ``warnings``
    what is wrong with the answer; ``reasons`` why an image is where it is (by image id, derived
    runs); ``proposed`` the new clusters an update offers; ``provenance`` how the run was made;
    ``tree`` its clusters at every scale (None for a run saved before imgcluster kept trees);
    ``colours`` each cluster's colour on the map and in the report (``palette.map_colours``, chosen
    when the run is saved; None for a run saved before imgcluster kept them).

    ``from_info`` builds one from the results as the loose dict of imgcluster before 0.2; that
    dict as a ninth argument, ``info``, still fills the typed fields (deprecated).
    """

    key: str
    created_at: float
    root: str
    model_id: str
    model_name: str
    n_images: int
    n_clusters: int
    config: dict[str, Any]
    requested_config: dict[str, Any] = field(default_factory=dict, kw_only=True)
    model: dict[str, Any] = field(default_factory=dict, kw_only=True)
    clustering: dict[str, Any] = field(default_factory=dict, kw_only=True)
    metrics: dict[str, Any] = field(default_factory=dict, kw_only=True)
    warnings: list[str] = field(default_factory=list, kw_only=True)
    clusters: list[ClusterSummary] = field(default_factory=list, kw_only=True)
    representatives: list[Representatives] = field(default_factory=list, kw_only=True)
    naming: Naming | None = field(default=None, kw_only=True)
    embedding: Embedded | None = field(default=None, kw_only=True)
    skipped: int = field(default=0, kw_only=True)
    timings: dict[str, float] = field(default_factory=dict, kw_only=True)
    versions: dict[str, str] = field(default_factory=dict, kw_only=True)
    provenance: Provenance = field(default_factory=Provenance, kw_only=True)
    proposed: list[ProposedCluster] = field(default_factory=list, kw_only=True)
    reasons: dict[int, str] = field(default_factory=dict, kw_only=True)
    tree: ClusterTree | None = field(default=None, kw_only=True)  # None: a run saved before trees
    colours: dict[int, str] | None = field(default=None, kw_only=True)  # None: a run saved before colours
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)  # stored keys this version does not know

    @classmethod
    def from_info(cls, key: str, created_at: float, root: str, model_id: str, model_name: str, n_images: int,
                  n_clusters: int, config: dict[str, Any], info: dict[str, Any]) -> RunRecord:
        """A record from its columns and its results as one dict: the loose dict of imgcluster before
        0.2 (``as_info()``'s keys) or the stored format."""
        return cls(key, created_at, root, model_id, model_name, n_images, n_clusters, config,
                   **_results_from_dict(info))

    @property
    def info(self) -> dict[str, Any]:
        """The results as one dict (deprecated: read the typed fields, or ``as_info()``)."""
        warnings.warn("RunRecord.info is deprecated: read the record's typed fields (metrics, clusters, "
                      "provenance, ...) or as_info().", DeprecationWarning, stacklevel=2)
        return self.as_info()

    @property
    def parent(self) -> str | None:
        """The run this one was derived from (None for a fit)."""
        return self.provenance.parent

    def to_stored(self) -> dict[str, Any]:
        """The run's results as the store keeps them (JSON-ready, format ``RESULTS_FORMAT``)."""
        return {"format": RESULTS_FORMAT, "requested_config": self.requested_config, "model": self.model,
                "clustering": self.clustering, "metrics": self.metrics, "warnings": list(self.warnings),
                "clusters": [dataclasses.asdict(c) for c in self.clusters],
                "representatives": [dataclasses.asdict(r) for r in self.representatives],
                "naming": None if self.naming is None else self.naming.to_dict(),
                "embedding": None if self.embedding is None else dataclasses.asdict(self.embedding),
                "skipped": self.skipped, "timings": self.timings, "versions": self.versions,
                "provenance": dataclasses.asdict(self.provenance),
                "proposed": [dataclasses.asdict(p) for p in self.proposed],
                "reasons": {str(i): r for i, r in self.reasons.items()},
                "tree": None if self.tree is None else self.tree.to_dict(),
                "colours": None if self.colours is None else {str(c): v for c, v in self.colours.items()},
                "extra": self.extra}

    @classmethod
    def from_stored(cls, row: dict[str, Any], results: dict[str, Any]) -> "RunRecord":
        """A record from its row's columns and its stored results (either format)."""
        return cls(**row, **_results_from_dict(results))

    def as_info(self) -> dict[str, Any]:
        """The results as one JSON-ready dict under the keys imgcluster has always shown (``runs show
        --json``): a derived run's parent and details under "update" (review: with "reviewed") or
        "edit", a follow's matching under clustering["follows"]."""
        info: dict[str, Any] = dict(self.extra)
        info.update({"requested_config": self.requested_config, "model": self.model, "metrics": self.metrics,
                     "warnings": list(self.warnings), "timings": self.timings, "versions": self.versions,
                     "clustering": dict(self.clustering),
                     "clusters": [dataclasses.asdict(c) for c in self.clusters],
                     "representatives": [dataclasses.asdict(r) for r in self.representatives],
                     "skipped": self.skipped})
        if self.embedding is not None:
            info["embedding"] = dataclasses.asdict(self.embedding)
        if self.naming is not None:
            info["naming"] = self.naming.to_dict()
        how, parent, details = self.provenance.how, self.provenance.parent, self.provenance.details
        if how in (UPDATE, REVIEW):
            counts = {k: details.get(k, 0) for k in ("new_images", "removed_images", "changed_images")}
            info["update"] = {"parent": parent, **counts, "proposed": [dataclasses.asdict(p) for p in self.proposed],
                              "reasons": dict(self.reasons)}
            if how == REVIEW:
                info["update"]["reviewed"] = {k: details.get(k, []) for k in ("accepted", "rejected")}
        elif how == EDIT:
            info["edit"] = {"parent": parent, **details}
        elif how == FOLLOW:
            info["clustering"]["follows"] = {"run": parent, **details}
        return info


def _taking_info(init: Any) -> Any:
    """The dataclass's ``__init__``, still taking the old results dict as a ninth argument or as
    ``info=`` (deprecated: ``RunRecord.from_info``). ``info`` is no field, so ``dataclasses.replace``
    never reads the deprecated property."""

    @functools.wraps(init)
    def __init__(self: RunRecord, *args: Any, info: dict[str, Any] | None = None, **fields: Any) -> None:
        if len(args) == 9:
            *args, info = args
        if info is not None:
            warnings.warn("RunRecord(..., info) is deprecated: use RunRecord.from_info(..., info), or give the "
                          "typed fields.", DeprecationWarning, stacklevel=2)
            if info:  # as before: a dict fills every typed field, an empty one none
                fields = {**fields, **_results_from_dict(info)}
        init(self, *args, **fields)

    return __init__


RunRecord.__init__ = _taking_info(RunRecord.__init__)  # type: ignore[method-assign]


def _results_from_dict(stored: dict[str, Any]) -> dict[str, Any]:
    """The typed fields of a run's stored results, format 2 or the older loose dict."""
    data = dict(stored)
    if data.pop("format", 1) < 2:
        data = _upgrade_results(data)
    naming, embedding = data.get("naming"), data.get("embedding")
    return {
        "requested_config": data.get("requested_config") or {}, "model": data.get("model") or {},
        "clustering": data.get("clustering") or {}, "metrics": data.get("metrics") or {},
        "warnings": list(data.get("warnings") or []),
        "clusters": [ClusterSummary(**c) for c in data.get("clusters") or []],
        "representatives": [Representatives(**r) for r in data.get("representatives") or []],
        "naming": Naming(**naming) if naming else None,
        "embedding": Embedded(**embedding) if embedding else None,
        "skipped": int(data.get("skipped") or 0), "timings": data.get("timings") or {},
        "versions": data.get("versions") or {}, "provenance": Provenance(**(data.get("provenance") or {})),
        "proposed": [ProposedCluster(**p) for p in data.get("proposed") or []],
        "reasons": {int(i): r for i, r in (data.get("reasons") or {}).items()},
        "tree": ClusterTree.from_dict(data["tree"]) if data.get("tree") else None,
        "colours": None if data.get("colours") is None else {int(c): v for c, v in data["colours"].items()},
        "extra": data.get("extra") or {}}


_KNOWN = {"requested_config", "model", "clustering", "metrics", "warnings", "clusters", "representatives", "naming",
          "embedding", "skipped", "timings", "versions", "update", "edit"}


def _upgrade_results(info: dict[str, Any]) -> dict[str, Any]:
    """Format 1 → 2: the derivation's keys become one ``provenance``. A derived run of format 1 copied
    its parent's dict, so an update of an edit holds both keys: "update", written last, wins."""
    data = {k: v for k, v in info.items() if k in _KNOWN}
    data["extra"] = {k: v for k, v in info.items() if k not in _KNOWN}
    clustering = dict(data.get("clustering") or {})
    follows = clustering.pop("follows", None)
    data["clustering"] = clustering
    update, edit = data.pop("update", None), data.pop("edit", None)
    if update:
        reviewed = update.get("reviewed")
        details = {k: update.get(k, 0) for k in ("new_images", "removed_images", "changed_images")}
        data["provenance"] = {"how": REVIEW if reviewed else UPDATE, "parent": update.get("parent"),
                              "details": {**details, **(reviewed or {})}}
        data["proposed"], data["reasons"] = update.get("proposed", []), update.get("reasons", {})
    elif edit:
        details = {k: v for k, v in edit.items() if k != "parent"}
        data["provenance"] = {"how": EDIT, "parent": edit.get("parent"), "details": details}
    elif follows:
        details = {k: v for k, v in follows.items() if k != "run"}
        data["provenance"] = {"how": FOLLOW, "parent": follows.get("run"), "details": details}
    return data


def upgrade_results(info: dict[str, Any]) -> dict[str, Any]:
    """A run's stored results (either format) in the current format: what a schema upgrade writes."""
    return RunRecord("", 0.0, "", "", "", 0, 0, {}, **_results_from_dict(info)).to_stored()


@dataclass(frozen=True)
class Assignments:
    """Per-image results of a run; arrays of equal length, aligned with ``image_ids``."""

    image_ids: Any        # (n,) int64
    clusters: Any         # (n,) int64, -1 = unclustered
    membership_probability: Any  # (n,) float in [0, 1]
    x: Any                # (n,) float, 2-D map
    y: Any
    how: Any = None       # (n,) str: fit | filed | attached | duplicate (see schema.py); None: all "fit"
    leaves: Any = None    # (n,) int64: the cluster tree's leaf of each image (-1 = unclustered); None: its cluster

    def leaf_per_image(self) -> Any:
        """Each image's leaf of the run's cluster tree: ``leaves``, or its cluster where none are stored."""
        return self.clusters if self.leaves is None else self.leaves

    def how_per_image(self) -> list[str]:
        """How each image got its cluster, as a list aligned with ``image_ids``."""
        if self.how is None:
            return ["fit"] * len(self.image_ids)
        return [str(h) for h in self.how]


# A name's confidence in words. The ImageNet namer calibrates its confidences per kind of node so
# that these bars fall where bench/names.py measured its names right often enough (label/hierarchy.py,
# BARS; docs/guide/names.md): class names that read unsure were right 1 of 5 on the sets the rules
# were chosen on and 0 of 6 held out (the clock it calls a spotlight, the moon it calls a nematode),
# likely 7 of 9 and 6 of 6; from 0.9 every name was right, too few to say more, so sure starts there.
CONFIDENCE_LEVELS = ((0.9, "sure"), (0.65, "likely"))


@dataclass(frozen=True)
class ClusterName:
    """A name for one cluster of a run, where it came from and how sure its source was.

    ``source`` is manual, imagenet, zero-shot or vlm; ``confidence`` is a probability in [0, 1] or
    None when the source gives none; ``candidates`` are the source's best (name, score) pairs, best
    first. ``error`` says why the source's last try failed (an earlier ``name`` is then kept).
    ``level`` is the confidence in words (sure, likely, unsure).
    """

    cluster: int
    name: str
    source: str
    confidence: float | None = None
    candidates: list[tuple[str, float | None]] = field(default_factory=list)
    error: str | None = None
    created_at: float = 0.0

    @property
    def level(self) -> str | None:
        """How far to trust the name, in a word: sure, likely or unsure; None for a manual name (the
        user's own) and for a source that gives no confidence (a VLM)."""
        if self.source == "manual" or self.confidence is None:
            return None
        return next((word for bar, word in CONFIDENCE_LEVELS if self.confidence >= bar), "unsure")
