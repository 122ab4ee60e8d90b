"""The contract every namer keeps, what it may look at, and how one name per cluster is chosen."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..config import NameConfig
from ..store import ClusterName, Workspace

MANUAL = "manual"
TOP = 3  # candidates kept per name
SAMPLE = 32  # members a view's sample holds at most (NameConfig.images_per_cluster is at most 32)


@dataclass(frozen=True)
class ClusterView:
    """One cluster as a namer sees it: its size, representative images (best first: files, content
    hashes and stored JPEG thumbnails, aligned) and the mean of its members' L2-normalised embeddings.

    ``sample``: a view of up to ``SAMPLE`` members chosen by content hash (see ``sample_by_hash``),
    which depends only on who is in the cluster; None where the caller has none to give.
    ``embeddings``: the view's members' embeddings (aligned with ``paths``), given in a sample to a
    namer that needs embeddings."""

    cluster: int
    size: int
    paths: list[str]
    content_hashes: list[str]
    thumbnails: list[bytes | None] = field(default_factory=list)
    mean_embedding: np.ndarray | None = None
    sample: ClusterView | None = None
    embeddings: np.ndarray | None = None

    def image(self, i: int, min_side: int | None = None) -> Image.Image:
        """Representative ``i`` decoded to RGB: the file when it is still readable, else its thumbnail."""
        from ..scan import load_rgb

        try:
            return load_rgb(self.paths[i], min_side=min_side)
        except Exception:  # moved or damaged since the run: the thumbnail still shows it
            thumbnail = self.thumbnails[i] if i < len(self.thumbnails) else None
            if thumbnail is None:
                raise
            return load_rgb(thumbnail)


def sample_by_hash(content_hashes: Sequence[str | None], count: int = SAMPLE) -> list[int]:
    """Indices of the ``count`` members with the smallest content hashes (members without one last).

    The representatives move with the seed (they are central or probable in the seed's map), so names
    drawn from them changed from one seed to the next on identical clusters: on the sample photos'
    crops 6 of 21 photos kept one name over seeds 0-3, 21 of 21 from this sample (bench/names.py).
    Like a min-hash, the sample of a cluster that gains or loses a few members barely changes."""
    ranked = heapq.nsmallest(count, ((h, i) for i, h in enumerate(content_hashes) if h))
    chosen = [i for _, i in ranked]
    return chosen + [i for i, h in enumerate(content_hashes) if not h][:count - len(chosen)]


@dataclass(frozen=True)
class NamingContext:
    """What a namer may draw on besides the clusters: the run's model (description, and loaded on
    demand), a model with an ImageNet classifier head, the workspace (for caches) and a VLM key."""

    model: Mapping[str, Any]
    load_embedder: Callable[[], Any]
    load_classifier: Callable[[], Any]
    workspace: Workspace | None = None
    api_key: str | None = None


class Namer(Protocol):
    """Turns clusters into names; built from the run's naming settings by ``from_config``."""

    source: str  # stored with every name it gives
    needs_embeddings: bool  # True: each ClusterView carries its cluster's mean embedding

    @classmethod
    def from_config(cls, config: NameConfig, context: NamingContext) -> "Namer": ...

    def name(self, clusters: Sequence[ClusterView],
             progress: Callable[[int, int], None] | None = None) -> list[ClusterName]:
        """One name per cluster given (``error`` set where it failed); never raises for one cluster.
        ``progress(done, total)``: clusters named so far, or the namer's own slow steps (zero-shot:
        batches of vocabulary prompts embedded); a namer that works in one step may ignore it."""
        ...


class NoNamer:
    """Leaves clusters numbered."""

    source = "none"
    needs_embeddings = False

    @classmethod
    def from_config(cls, config: NameConfig, context: NamingContext) -> "NoNamer":
        return cls()

    def name(self, clusters: Sequence[ClusterView],
             progress: Callable[[int, int], None] | None = None) -> list[ClusterName]:
        return []


def merge_by_name(names: Sequence[str], scores: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Columns of (m, len(names)) scores summed where they share a name (ImageNet has two 'missile'
    classes, for one): (the distinct names, (m, n_distinct) scores)."""
    distinct = list(dict.fromkeys(names))
    column = {name: i for i, name in enumerate(distinct)}
    merge = np.zeros((len(names), len(distinct)), dtype=scores.dtype)
    merge[np.arange(len(names)), [column[name] for name in names]] = 1
    return distinct, scores @ merge


def distinct_choice(scores: np.ndarray, depth: int = 5, min_ratio: float = 0.5) -> np.ndarray:
    """A column per row of (clusters, terms) scores, kept distinct where the scores allow: pairs are
    taken best score first, each row getting its best term among its ``depth`` best (scoring at least
    ``min_ratio`` of its best) that no row took already; a row whose candidates are all taken keeps
    its very best (a shared name)."""
    depth = min(depth, scores.shape[1])
    best = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    pairs = sorted((-scores[row, term], row, int(term)) for row in range(len(scores)) for term in best[row]
                   if scores[row, term] >= min_ratio * scores[row, best[row, 0]])
    choice = np.full(len(scores), -1, dtype=np.int64)
    taken: set[int] = set()
    for _, row, term in pairs:
        if choice[row] < 0 and term not in taken:
            choice[row] = term
            taken.add(term)
    unplaced = choice < 0
    choice[unplaced] = best[unplaced, 0]
    return choice


def names_from_scores(clusters: Sequence[int], scores: np.ndarray, terms: Sequence[str], source: str,
                      top: int = TOP) -> list[ClusterName]:
    """One name per cluster from (clusters, terms) scores in [0, 1]: the distinct choice (see
    ``distinct_choice``) as the name, with its score as confidence, then the next best candidates."""
    choice = distinct_choice(scores)
    names = []
    for row, cluster in enumerate(clusters):
        ranked = [int(choice[row])] + [int(t) for t in np.argsort(-scores[row], kind="stable")[:top]
                                       if t != choice[row]]
        candidates = [(terms[t], round(float(scores[row, t]), 4)) for t in ranked[:top]]
        names.append(ClusterName(int(cluster), candidates[0][0], source, candidates[0][1], candidates))
    return names


def choose_names(names: Iterable[ClusterName]) -> dict[int, ClusterName]:
    """The name each cluster shows: a manual one wins, else the newest successful automatic one."""
    chosen: dict[int, ClusterName] = {}
    for candidate in names:
        if not candidate.name:
            continue
        current = chosen.get(candidate.cluster)
        if current is None or _ranks_above(candidate, current):
            chosen[candidate.cluster] = candidate
    return chosen


def _ranks_above(candidate: ClusterName, current: ClusterName) -> bool:
    if (candidate.source == MANUAL) != (current.source == MANUAL):
        return candidate.source == MANUAL
    return candidate.created_at >= current.created_at


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
