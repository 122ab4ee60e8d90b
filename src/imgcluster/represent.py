"""The images that stand for a cluster: the most central, the most probable, and a diverse sample.

Plain functions on arrays (row indices in, row indices out); ``representatives`` applies them to
every cluster of a run and answers in catalogue ids. All distances are measured in the clustering
space, the space the clusterer saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cluster.base import NOISE

KINDS = ("central", "probable", "diverse")
PER_KIND = 8


def most_central(points: np.ndarray, count: int) -> np.ndarray:
    """Rows of ``points`` (m, d) nearest their centroid, nearest first; the first is the medoid-like image."""
    distance = np.linalg.norm(points - points.mean(axis=0), axis=1)
    return np.argsort(distance, kind="stable")[:count]


def most_probable(probabilities: np.ndarray, points: np.ndarray, count: int) -> np.ndarray:
    """Rows with the highest membership probability (m,), ties broken by nearness to the centroid."""
    distance = np.linalg.norm(points - points.mean(axis=0), axis=1)
    return np.lexsort((distance, -np.round(probabilities, 3)))[:count]


def diverse_sample(points: np.ndarray, count: int) -> np.ndarray:
    """Farthest-point sampling: the most central row, then each time the row farthest from all chosen.

    Stops early when the rest coincide with a chosen point (identical images are one view, not many).
    """
    if len(points) == 0 or count < 1:
        return np.empty(0, dtype=np.int64)
    chosen = [int(most_central(points, 1)[0])]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < min(count, len(points)):
        farthest = int(np.argmax(distance))
        if distance[farthest] <= 1e-9:
            break
        chosen.append(farthest)
        distance = np.minimum(distance, np.linalg.norm(points - points[farthest], axis=1))
    return np.asarray(chosen, dtype=np.int64)


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


def representatives(image_ids: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, space: np.ndarray,
                    per_kind: int = PER_KIND) -> list[Representatives]:
    """Representatives of every cluster, in cluster-id order. Unclustered images (-1) get only a
    diverse sample: they have no centre and no membership."""
    image_ids = np.asarray(image_ids)
    result = []
    for cluster in np.unique(labels):
        rows = np.flatnonzero(labels == cluster)
        points = np.asarray(space[rows], dtype=np.float64)

        def ids(picked: np.ndarray) -> list[int]:
            return [int(i) for i in image_ids[rows[picked]]]

        diverse = ids(diverse_sample(points, per_kind))
        if cluster == NOISE:
            result.append(Representatives(int(cluster), diverse=diverse))
            continue
        result.append(Representatives(int(cluster), ids(most_central(points, per_kind)),
                                      ids(most_probable(probabilities[rows], points, per_kind)), diverse))
    return result
