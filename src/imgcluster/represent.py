"""The images that stand for a cluster: the most central, the most probable, and a diverse sample.

Plain functions on arrays (row indices in, row indices out); ``representatives`` applies them to
every cluster of a run and answers in catalogue ids. All distances are measured in the clustering
space, the space the clusterer saw.
"""

from __future__ import annotations

import numpy as np

from .cluster.base import NOISE
from .store.records import KINDS, Representatives  # noqa: F401 -- moved there; still importable here

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
