"""Auto mode: no k and no min_cluster_size from the user.

Tries a small grid of HDBSCAN settings (min_cluster_size from 0.5% to 4% of the images, two
min_samples, eom and leaf selection) on a sample, and scores each by the silhouette, **in the
embedding space** (cosine), of its clusters with every unclustered point attached to its nearest
cluster centre. The whole score table and the sentence explaining the choice are kept in
``describe()``, so every run says why it has the clusters it has.

Why this score, measured on the digits (1,797 images, efficientnet-lite0 + UMAP, seeds 0-2, against
k-means given the true k = 10 in the same space: NMI 0.748 / 0.786 / 0.783):
- silhouette in the UMAP space (clustered points only, or with noise attached), HDBSCAN's relative
  validity, DBCV and subsample stability all prefer over-merged 7-8 cluster answers (NMI 0.74),
  because UMAP packs similar digits into touching blobs that look like one well-separated cluster;
- silhouette of clustered points only rewards leaving hard images out (leaf settings with 25-40%
  unclustered);
- silhouette in the embedding space with noise attached picks 9-10 clusters on every seed, NMI
  0.799 / 0.794 / 0.797. The attachment makes every candidate answer for every image, and the
  embedding space still separates what UMAP has pushed together.
Not yet the default: on the first 500 digits (UMAP on so few points draws fewer, larger blobs) the
same score picks a 3-5 cluster answer on two seeds of four (NMI 0.40-0.59 against k-means' 0.66-0.70),
and no score tried (micro or per-cluster silhouette, agreement with k-means at the same k) avoided it.
The silhouette runs on one fixed sample with its distance matrix computed once, so the search
costs little more than the HDBSCAN fits; the winner is then fitted on everything.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .base import NOISE, auto_min_cluster_size
from .hdbscan import HdbscanClusterer

log = logging.getLogger(__name__)

SEARCH_SAMPLE = 5_000      # grid fits beyond this many points run on a sample
SILHOUETTE_SAMPLE = 2_500  # points whose silhouette scores each candidate (a subset of the search sample)
MAX_NOISE = 0.5            # a setting that leaves most images unclustered is not an answer


class AutoClusterer:
    """HDBSCAN with its settings chosen by a scored grid search; see the module docstring.

    ``fit(x, embeddings=...)`` takes the clustering space ``x`` and, optionally, the embeddings the
    space was made from (same rows) for the score; without them the space itself is scored.
    """

    def __init__(self, seed: int = 0, alpha: float = 1.0, **_: Any):
        self.seed, self.alpha = seed, alpha

    def candidates(self, n: int) -> list[dict[str, Any]]:
        """The grid for ``n`` points: distinct (min_cluster_size, min_samples, selection) settings."""
        base = auto_min_cluster_size(n)
        sizes = sorted({max(2, min(s, max(2, n // 2))) for s in (base // 2, base, base * 2, base * 4)})
        grid = []
        for selection in ("eom", "leaf"):
            for size in sizes:
                for samples in sorted({min(size, 10), min(size, 5)}, reverse=True):
                    grid.append({"min_cluster_size": size, "min_samples": samples,
                                 "cluster_selection_method": selection})
        return grid

    def fit(self, x: np.ndarray, embeddings: np.ndarray | None = None) -> "AutoClusterer":
        n = len(x)
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=SEARCH_SAMPLE, replace=False)) if n > SEARCH_SAMPLE else np.arange(n)
        scored = np.sort(rng.choice(len(sample), size=min(SILHOUETTE_SAMPLE, len(sample)), replace=False))
        reference = x if embeddings is None else embeddings
        distances = _distances(np.asarray(reference)[sample[scored]], cosine=embeddings is not None)
        scale = len(sample) / n
        table = []
        for params in self.candidates(n):
            # On a sample, cluster sizes shrink with it; min_cluster_size follows so the answer transfers.
            sample_params = dict(params, min_cluster_size=max(2, round(params["min_cluster_size"] * scale)))
            labels = HdbscanClusterer(alpha=self.alpha, **sample_params).fit(x[sample]).labels_
            table.append({**params, **_score(x[sample], labels, scored, distances)})
        self.table_ = table
        self._choose(table, n, len(sample), embeddings is not None)
        self.model_ = HdbscanClusterer(alpha=self.alpha, **self.chosen_).fit(x)
        self.labels_, self.probabilities_ = self.model_.labels_, self.model_.probabilities_
        return self

    def _choose(self, table: list[dict[str, Any]], n: int, searched: int, in_embeddings: bool) -> None:
        eligible = [row for row in table if row["silhouette"] is not None and row["noise_fraction"] <= MAX_NOISE]
        if eligible:
            # Ties (the same clusters from different settings) go to the fewest unclustered images.
            best = max(eligible, key=lambda row: (row["silhouette"], -row["noise_fraction"]))
            where = "the embedding space (cosine)" if in_embeddings else "the clustering space"
            self.reason_ = (f"highest silhouette ({best['silhouette']:.3f}) in {where}, unclustered images counted "
                            f"with their nearest cluster, among {len(eligible)} settings with at least 2 clusters "
                            f"and at most {MAX_NOISE:.0%} unclustered"
                            + (f"; searched on a sample of {searched:,}" if searched < n else ""))
        else:
            best = next(row for row in table if row["min_cluster_size"] == auto_min_cluster_size(n))
            self.reason_ = "no setting found 2 or more clusters; kept the default size (about 1% of the images)"
        self.chosen_ = {key: best[key] for key in ("min_cluster_size", "min_samples", "cluster_selection_method")}
        log.info("auto mode chose %s: %s", self.chosen_, self.reason_)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model_.predict(x)

    def describe(self) -> dict[str, object]:
        described = dict(self.model_.describe()) if hasattr(self, "model_") else {}
        described.update({"method": "auto", "algorithm": "hdbscan",
                          "auto": {"reason": getattr(self, "reason_", None), "table": getattr(self, "table_", [])}})
        return described


def _distances(points: np.ndarray, cosine: bool) -> np.ndarray:
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(np.asarray(points, dtype=np.float32), metric="cosine" if cosine else "euclidean")


def _score(space: np.ndarray, labels: np.ndarray, scored: np.ndarray, distances: np.ndarray) -> dict[str, Any]:
    """Silhouette of the ``scored`` rows (precomputed ``distances``) with noise attached to the
    nearest cluster centre in ``space``; plus cluster count and noise share of the whole sample."""
    from sklearn.metrics import silhouette_score

    clustered = labels != NOISE
    ids = np.unique(labels[clustered])
    row = {"n_clusters": int(len(ids)), "noise_fraction": round(float(1 - clustered.mean()), 4), "silhouette": None}
    if len(ids) < 2:
        return row
    attached = _attach_to_centres(space, labels, ids)[scored]
    if len(np.unique(attached)) >= 2:
        row["silhouette"] = round(float(silhouette_score(distances, attached, metric="precomputed")), 4)
    return row


def _attach_to_centres(space: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    attached = labels.copy()
    noise = labels == NOISE
    if noise.any():
        centres = np.stack([space[labels == i].mean(axis=0) for i in ids])
        squared = ((space[noise, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        attached[noise] = ids[squared.argmin(axis=1)]
    return attached
