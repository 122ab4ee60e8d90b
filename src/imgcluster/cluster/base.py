"""The contract every clusterer keeps."""

from __future__ import annotations

from typing import Protocol

import numpy as np

NOISE = -1  # label of points no cluster claims ("unclustered")


class Clusterer(Protocol):
    labels_: np.ndarray          # (n,) int, NOISE for unclustered
    probabilities_: np.ndarray   # (n,) membership probability in [0, 1]

    def fit(self, x: np.ndarray) -> "Clusterer": ...

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and membership probabilities for new points, without refitting."""
        ...

    def describe(self) -> dict[str, object]:
        """The parameters actually used, after automatic choices."""
        ...


def auto_min_cluster_size(n: int) -> int:
    """About 1% of the collection, at least 5 and never more than a third of it (never 2 on 3)."""
    return int(max(2, min(max(5, round(0.01 * n)), n // 3 if n >= 6 else 2)))
