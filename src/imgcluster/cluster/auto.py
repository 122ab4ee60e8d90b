"""Auto mode (the default): no k and no min_cluster_size from the user.

Tries a small grid of answers on a sample, all in the clustering space: 16 HDBSCAN settings
(min_cluster_size from 0.5% to 4% of the images, two min_samples, eom and leaf selection) and k-means
for k from 2 up to the most clusters any HDBSCAN setting found (at least 30). Each answer, with every
unclustered point attached to its nearest cluster centre, is scored by

    modularity (resolution 1.5) on the 10-nearest-neighbour graph of the embedding space (cosine)
    + 1.5 x silhouette in the clustering space;

the best is fitted on everything. The score table, the choice and the sentence explaining it are
kept in ``describe()``, so every run says why it has the clusters it has.

Modularity is the share of neighbour links that stay inside a cluster minus what clusters of those
sizes would keep by chance: it asks whether clusters keep each image's neighbours. It carries a
preferred scale (a cluster holding a share s of the links is split in two halves when fewer than
0.75 s of its links cross between them), so alone it cut collections of two digits into 8-10 clusters. The silhouette
asks whether clusters are separated by gaps in the clustering space; alone it keeps only the coarsest
gaps (2-6 clusters on the ten digits). The sum holds on both kinds of collection.

Measured with efficientnet-lite0 + the default UMAP; NMI against the labels, k-means told the true k in
the same space as the bar. Sets: the scikit-learn digits (first 300, 500, 1,000, all 1,797; seeds
0-3), the 630 sample-photo crops (21 photos; seeds 0-3), digit subsets of 2-5 classes and photo
subsets of 4-10 photos (seeds 0-1) — all used to choose the score — and 14 held-out sets (other digit
slices and class subsets, fewer crops per photo; seeds 0-1) checked once afterwards:

    mean NMI (cases)            hdbscan (~1%)  silhouette only*  this score  k-means, true k
    digits 300-1,797 + photos (20)   0.751         0.628           0.785        0.775
    2-5 digits, 4-10 photos (16)     0.860         0.858           0.862        0.891
    held-out (28)                    0.826         0.843           0.860        0.863
    (* the previous auto mode: HDBSCAN settings only, embedding-space silhouette)

This score is never more than 0.02 under k-means with the true k on the first group (on 500 digits:
0.68-0.71 against 0.66-0.70; the previous auto mode picked 3-4 clusters there, 0.40-0.53), 5 times in
16 on the second and 3 in 28 held out; more than 0.02 under hdbscan 0, 2 (two digits, seed 0: 4
clusters, 0.72-0.74 against 0.85-0.87) and 1 time (10 crops each of 21 photos: 18 clusters, 0.957
against 0.992). Also tried: silhouette in either space alone, Davies-Bouldin, k-means subsample
stability (2-4 clusters); Calinski-Harabasz (the largest k); modularity alone at resolution 1-2 or on
the clustering space's graph, modularity + entropy of the cluster sizes, the map equation, and
silhouette as a floor (no setting good on both groups); the silhouette weight 1-3 (1.5 is the
middle of what held: below 1.25 two-group collections split, above 1.75 500 digits merged on one
seed). HDBSCAN settings alone cannot reach k-means' NMI below ~1,500 digits (best of the grid
0.68-0.71 on 1,000 digits against 0.72-0.75), hence the k-means candidates.
The figures above are from k-means with one start. Each k-means candidate (and the k-means method)
now keeps the best of 10 starts (see ``kmeans.restarts``): with one start a poor local optimum at some
k moved the score landscape as much as the choice between k=8 and k=10 (all 1,797 digits, UMAP seeds
0-7: this score 0.780 -> 0.792, k-means told the true k 0.779 -> 0.785, which it now beats on 6 seeds
and trails by 0.001 and 0.012 on two; first 500 digits in scikit-learn's order 0.707 -> 0.699 against
0.665; first 1,000 0.737 -> 0.742 against 0.738; photo crops 0.996 = 0.996).
The graph and both distance matrices are computed once on a fixed sample of at most 2,500 points.

Above ``SEARCH_SAMPLE`` points the grid searches a sample and the score sees a handful of points
of a 0.3% group, so after the final fit ``separated.carve_separated`` looks for smaller groups
(down to 0.1% of the points, at least 10) and makes a cluster of each one whose embedding-space
neighbours stay inside it (issue 25; measured in that module's docstring and in docs/scale.md).
Groups the grid already found are left as they are.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..params import Interval, Parameters, require_fitted
from .base import NOISE, auto_min_cluster_size, silhouette
from .hdbscan import HdbscanClusterer
from .kmeans import KMeansClusterer
from .separated import Carved, carve_separated, predict_carved

log = logging.getLogger(__name__)

SEARCH_SAMPLE = 5_000      # grid fits beyond this many points run on a sample
SCORE_SAMPLE = 2_500       # points whose neighbour graph scores each candidate (a subset of the search sample)
MAX_NOISE = 0.5            # a setting that leaves most images unclustered is not an answer
GRAPH_NEIGHBORS = 10       # the k-NN graph whose modularity is scored
GRAPH_BLOCK_FLOATS = 2_000_000  # distances of the graph's points measured at a time (8 MB)
RESOLUTION = 1.5           # modularity resolution: 1 over-merged the digits, 2 over-split them
SILHOUETTE_WEIGHT = 1.5    # score = modularity + this x silhouette in the clustering space (see the docstring)

_HDBSCAN_KEYS = ("min_cluster_size", "min_samples", "cluster_selection_method")


class AutoClusterer:
    """HDBSCAN or k-means with settings chosen by a scored grid search; see the module docstring.

    ``fit(x, embeddings=...)`` takes the clustering space ``x`` and, optionally, the embeddings the
    space was made from (same rows) for the score; without them the space itself is scored.
    ``progress(done, total)`` follows the candidates scored, then the final fit; the total grows
    once the HDBSCAN settings are scored if one of them found more than 30 clusters (more k to try).
    """

    # Its grid chooses every other HDBSCAN and k-means setting; a k or a min_cluster_size of the
    # user's own picks kmeans or hdbscan instead (``settings.chosen_method``).
    parameters: ClassVar[Parameters] = {"seed": [Interval(int, 0)], "alpha": [Interval(float, 0, open_low=True)]}

    def __init__(self, seed: int = 0, alpha: float = 1.0):
        self.seed, self.alpha = seed, alpha

    def candidates(self, n: int) -> list[dict[str, Any]]:
        """The HDBSCAN grid for ``n`` points: distinct (min_cluster_size, min_samples, selection)."""
        base = auto_min_cluster_size(n)
        sizes = sorted({max(2, min(s, max(2, n // 2))) for s in (base // 2, base, base * 2, base * 4)})
        grid = []
        for selection in ("eom", "leaf"):
            for size in sizes:
                for samples in sorted({min(size, 10), min(size, 5)}, reverse=True):
                    grid.append({"algorithm": "hdbscan", "min_cluster_size": size, "min_samples": samples,
                                 "cluster_selection_method": selection})
        return grid

    @staticmethod
    def k_grid(n: int, most_found: int) -> list[int]:
        """k for the k-means candidates: every k to 15, then steps of ~20% up to the most clusters an
        HDBSCAN setting found (at least 30), never more than a third of ``n``. They are there for
        when density answers merge groups; HDBSCAN's small settings already offer finer answers."""
        top = min(max(30, most_found), n // 3)
        ks = list(range(2, min(15, top) + 1))
        while ks and ks[-1] < top:
            ks.append(min(top, max(ks[-1] + 1, round(ks[-1] * 1.2))))
        return ks

    def fit(self, x: np.ndarray, embeddings: np.ndarray | None = None,
            progress: Callable[[int, int], None] | None = None) -> "AutoClusterer":
        n = len(x)
        grid = self.candidates(n)
        tick = _Ticker(progress, len(grid) + len(self.k_grid(min(n, SEARCH_SAMPLE), 0)) + 1)  # + 1: the final fit
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=SEARCH_SAMPLE, replace=False)) if n > SEARCH_SAMPLE else np.arange(n)
        scored = np.sort(rng.choice(len(sample), size=min(SCORE_SAMPLE, len(sample)), replace=False))
        reference = x if embeddings is None else embeddings
        graph = _neighbor_graph(np.asarray(reference)[sample[scored]], cosine=embeddings is not None)
        scale = len(sample) / n
        space = x[sample]
        distances = _distances(space[scored])
        table: list[dict[str, Any]] = []
        # The grid's 16 settings share two single-linkage trees (one per min_samples): hdbscan keeps
        # each in this folder and the other settings load it (0.4 s of 0.9 s at 3,927 points).
        with tempfile.TemporaryDirectory(prefix="imgcluster-hdbscan-") as trees:
            for params in grid:
                # On a sample, cluster sizes shrink with it; min_cluster_size follows so the answer transfers.
                sample_params = {key: params[key] for key in _HDBSCAN_KEYS}
                sample_params["min_cluster_size"] = max(2, round(params["min_cluster_size"] * scale))
                labels = HdbscanClusterer(alpha=self.alpha, **sample_params).fit(
                    space, tree_cache=trees, labels_only=True).labels_
                table.append({**params, "k": None, **_score(space, labels, scored, graph, distances)})
                tick()
        most_found = max((row["n_clusters"] for row in table if row["noise_fraction"] <= MAX_NOISE), default=0)
        ks = self.k_grid(len(sample), most_found)
        tick.total = len(grid) + len(ks) + 1
        for k in ks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # identical points: fewer distinct clusters than k
                labels = KMeansClusterer(k=k, seed=self.seed).fit(space).labels_
            table.append({"algorithm": "kmeans", **dict.fromkeys(_HDBSCAN_KEYS), "k": k,
                          **_score(space, labels, scored, graph, distances)})
            tick()
        self.table_ = table
        self._choose(table, n, len(sample), embeddings is not None)
        if self.chosen_["algorithm"] == "kmeans":
            self.model_ = KMeansClusterer(k=self.chosen_["k"], seed=self.seed).fit(x)
        else:
            self.model_ = HdbscanClusterer(alpha=self.alpha, **{key: self.chosen_[key] for key in _HDBSCAN_KEYS}).fit(x)
        # Up to SEARCH_SAMPLE points the grid saw every point at its own scale: carving there split
        # digits by writing style and photos by region (bench/quality.py --seeds 2: digits NMI 0.789 ->
        # 0.782, photo crops 0.996 -> 0.980), so the grid's answer stands.
        carved = (carve_separated(x, self.model_.labels_, self.model_.probabilities_, embeddings) if n > SEARCH_SAMPLE
                  else Carved(self.model_.labels_, self.model_.probabilities_, [], {}))
        self.labels_, self.probabilities_, self.carved_ = carved.labels, carved.probabilities, carved.groups
        if self.carved_:
            self.reason_ += (f"; then {len(self.carved_)} well-separated group(s) of "
                             f"{min(g['size'] for g in self.carved_)}-{max(g['size'] for g in self.carved_)} points "
                             "that it had merged or left unclustered made clusters of their own")
            # predict() needs these: the model's labels move to new numbers, and new points near a
            # carved group join it.
            self._renumbered, self._fit_space = carved.renumbered, np.asarray(x, dtype=np.float32)
        tick()
        return self

    def _choose(self, table: list[dict[str, Any]], n: int, searched: int, in_embeddings: bool) -> None:
        eligible = [row for row in table if row["score"] is not None and row["noise_fraction"] <= MAX_NOISE]
        if eligible:
            # Ties (the same clusters from different settings) go to the fewest unclustered images,
            # then to HDBSCAN, whose membership probabilities follow density.
            best = max(eligible, key=lambda row: (row["score"], -row["noise_fraction"], row["algorithm"] == "hdbscan"))
            where = "the embedding space (cosine)" if in_embeddings else "the clustering space"
            self.choice_ = _describe_choice(best)
            self.reason_ = (f"{self.choice_}: highest score {best['score']:.3f} = modularity {best['modularity']:.3f} "
                            f"(resolution {RESOLUTION:g}, {GRAPH_NEIGHBORS}-nearest-neighbour graph of {where}) + "
                            f"{SILHOUETTE_WEIGHT:g} x silhouette {best['silhouette']:.3f} (clustering space), unclustered "
                            f"images counted with their nearest cluster, among {len(eligible)} answers with at least 2 "
                            f"clusters and at most {MAX_NOISE:.0%} unclustered"
                            + (f"; searched on a sample of {searched:,}" if searched < n else ""))
        else:
            best = next(row for row in table
                        if row["algorithm"] == "hdbscan" and row["min_cluster_size"] == auto_min_cluster_size(n))
            self.choice_ = _describe_choice(best)
            self.reason_ = (f"{self.choice_}: no setting found 2 or more clusters; kept the default size (about 1% of "
                            "the images)")
        self.chosen_ = {key: best[key] for key in ("algorithm", "k", *_HDBSCAN_KEYS)}
        log.info("auto mode: %s", self.reason_)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities of new points of the clustering space (m, c): the chosen model's,
        except that after carving a point joins the cluster of its nearest fitted point when that
        point is in a carved group or the model's cluster was emptied by carving."""
        require_fitted(self, "model_")
        labels, probabilities = self.model_.predict(x)
        if not getattr(self, "carved_", None):
            return labels, probabilities
        return predict_carved(labels, probabilities, x, self._fit_space, self.labels_, self.probabilities_,
                              self.carved_, self._renumbered)

    def describe(self) -> dict[str, object]:
        described = dict(self.model_.describe()) if hasattr(self, "model_") else {}
        chosen = getattr(self, "chosen_", {})
        described.update({"method": "auto", "algorithm": chosen.get("algorithm"),
                          "auto": {"choice": getattr(self, "choice_", None), "reason": getattr(self, "reason_", None),
                                   "table": getattr(self, "table_", []), "carved": getattr(self, "carved_", [])}})
        return described


class _Ticker:
    """Counts steps done for an optional ``progress(done, total)``, starting with (0, total)."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int):
        self.progress, self.total, self.done = progress, total, 0
        if progress is not None:
            progress(0, total)

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _describe_choice(row: dict[str, Any]) -> str:
    if row["algorithm"] == "kmeans":
        return f"k-means with k={row['k']}"
    return (f"HDBSCAN with min_cluster_size={row['min_cluster_size']}, min_samples={row['min_samples']}, "
            f"{row['cluster_selection_method']} selection")


def _neighbor_graph(points: np.ndarray, cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    """The symmetrised k-NN graph of ``points`` as (rows, cols): each undirected link twice, no self-links."""
    from scipy import sparse
    from sklearn.metrics import pairwise_distances
    from sklearn.utils import gen_batches

    n = len(points)
    k = min(GRAPH_NEIGHBORS, n - 1)
    if k < 1:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    points = np.asarray(points, dtype=np.float32)
    nearest = np.empty((n, k), dtype=np.int64)
    # Cosine (the embeddings, as `cluster` scores): a block of rows at a time, since the whole
    # (n, n) matrix and argpartition's (n, n) int64 answer were 75 MB of new memory at 2,500 points,
    # 0.5-0.9 s of a warm re-cluster on this machine. Euclidean (a clustering space scored alone)
    # stays whole: scikit-learn mirrors one triangle of a whole matrix into the other, and
    # near-duplicate points measured in blocks could swap places among the nearest.
    block = max(1, GRAPH_BLOCK_FLOATS // n) if cosine else n
    metric = "cosine" if cosine else "euclidean"
    for rows in gen_batches(n, block):
        own = np.arange(rows.start, rows.stop)
        distances = (pairwise_distances(points, metric=metric) if len(own) == n else  # whole: mirrored
                     pairwise_distances(points[rows], points, metric=metric))
        distances[own - rows.start, own] = np.inf
        nearest[rows] = np.argpartition(distances, k - 1, axis=1)[:, :k]
    links = sparse.coo_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), nearest.ravel())), shape=(n, n)).tocsr()
    links = (links + links.T).tocoo()
    return links.row.astype(np.int64), links.col.astype(np.int64)


def _distances(points: np.ndarray) -> np.ndarray:
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(np.asarray(points, dtype=np.float32))


def _score(space: np.ndarray, labels: np.ndarray, scored: np.ndarray, graph: tuple[np.ndarray, np.ndarray],
           distances: np.ndarray) -> dict[str, Any]:
    """Modularity on ``graph`` and silhouette from ``distances`` (both over the ``scored`` rows), with
    noise attached to the nearest cluster centre in ``space``, and their weighted sum; plus cluster
    count and noise share of the whole sample."""
    clustered = labels != NOISE
    ids = np.unique(labels[clustered])
    row = {"n_clusters": int(len(ids)), "noise_fraction": round(float(1 - clustered.mean()), 4), "modularity": None,
           "silhouette": None, "score": None}
    rows, cols = graph
    attached = np.searchsorted(ids, _attach_to_centres(space, labels, ids)[scored]) if len(ids) else None
    if len(ids) < 2 or not len(rows) or len(np.unique(attached)) < 2 or len(np.unique(attached)) >= len(scored):
        return row
    row["modularity"] = round(_modularity(rows, cols, attached, RESOLUTION), 4)
    row["silhouette"] = round(silhouette(distances, attached), 4)
    row["score"] = round(row["modularity"] + SILHOUETTE_WEIGHT * row["silhouette"], 4)
    return row


def _modularity(rows: np.ndarray, cols: np.ndarray, labels: np.ndarray, resolution: float) -> float:
    """Newman's modularity of ``labels`` (0..c-1) on the undirected graph given as both-way links."""
    links = len(rows)
    inside = float((labels[rows] == labels[cols]).sum()) / links
    degree_share = np.bincount(labels[rows], minlength=int(labels.max()) + 1) / links
    return inside - resolution * float((degree_share ** 2).sum())


def _attach_to_centres(space: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    attached = labels.copy()
    noise = labels == NOISE
    if noise.any():
        centres = np.stack([space[labels == i].mean(axis=0) for i in ids])
        squared = ((space[noise, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        attached[noise] = ids[squared.argmin(axis=1)]
    return attached
