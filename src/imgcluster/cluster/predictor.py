"""File new images into a fitted run's clusters without refitting anything.

A new embedding is compared with the run's own embeddings (exact up to ``neighbours.EXACT_UP_TO``
images, beyond that candidates from a PCA projection re-ranked exactly; see ``neighbours.build_index``), and takes the cluster its nearest neighbours vote for,
weighted by similarity and by their membership probabilities; its map position is the weighted mean
of theirs. This needs no UMAP ``transform`` (whose numba JIT costs ~50 s in a fresh process) and
works the same for every clusterer, including those with no ``predict`` of their own.

An image identical to a training image gets that image's stored assignment, so predictions on the
fit's own points agree with the fit. An image far from every training image (less similar to its
nearest neighbour than 99% of clustered training images are to theirs, or than half the median of
those) is left unassigned, with the reason. With ``held_quantile`` set (a persisted run's predictor),
an image is also held when it is less typical of the cluster it would join than nearly all of that
cluster's own members, and its membership probability is calibrated: see ``openset``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..neighbours import (build_index, copy_index, exact_index, index_from_bytes, is_index, read_index, search,
                          set_nprobe)
from ..params import require_fitted
from .base import NOISE
from .openset import (AGREEMENT, CENTRED, CORRECT, DEFAULT_HELD_QUANTILE, DENSITY, HELD_AGREEMENT, HELD_DENSITY,
                      HELD_FAR, HELD_GROUP, HELD_TYPICAL, HELD_UNCLUSTERED, LEFT_OUT_DEPTH, N_STATS, TESTED, TYPICAL,
                      Calibration, ClusterBars, UnseenCalibration, centred_similarity, centred_units,
                      check_held_quantile, cluster_bars, combined, density_rank, fit_calibration, fit_unseen,
                      held_neighbour_scale, held_with_group, left_out_rows, others_only, rank_value, rows_to_measure,
                      typicality, vote, without_self)

_TOLERANCE = 1e-5
# How member statistics become p-values (saved with the left-out members' run p-values, which
# depend on it): "lower spread" since statistics are standardised per cluster (openset.lower_spreads).
P_VALUES = "lower spread"
SAME_IMAGE = 0.9995  # embeddings are stored as float16: a file's own vector comes back within ~2e-4


@dataclass(frozen=True)
class Prediction:
    """Per new point: cluster (-1 = unassigned), membership probability, map position, the nearest
    training image (catalogue id) and its cosine similarity, and why it was assigned or not."""

    clusters: np.ndarray
    membership_probability: np.ndarray
    x: np.ndarray
    y: np.ndarray
    nearest_image_id: np.ndarray
    nearest_similarity: np.ndarray
    reasons: list[str]
    neighbours: np.ndarray   # (m, k) rows of the training set
    weights: np.ndarray      # (m, k) their similarity weights (0 for missing neighbours)
    held_by: tuple[str, ...] = ()  # per point: the test an unassigned point failed (openset.HELD_*), or ""

    def place(self, values: np.ndarray) -> np.ndarray:
        """Similarity-weighted mean of per-training-point ``values`` (n, ...) for each new point."""
        values = np.asarray(values)
        total = np.maximum(self.weights.sum(axis=1), 1e-12)
        weighted = self.weights.reshape(*self.weights.shape, *([1] * (values.ndim - 1))) * values[self.neighbours]
        return weighted.sum(axis=1) / total.reshape(-1, *([1] * (values.ndim - 1)))


class Predictor:
    """k-NN filing into a run's clusters. ``fit`` takes the run's L2-normalised embeddings (n, d)
    and its per-image results; ``predict`` takes new L2-normalised embeddings (m, d).

    ``outlier_quantile`` sets the "far from every image" bar described above; None keeps only its
    half-the-median part, for points known to lie in sparse regions (noise being attached).
    ``held_quantile`` turns on the per-cluster open-set tests (``openset``): the share of the run's
    own members that their combined test would hold; None or 0 files by the vote and the far bar
    alone (points of the fit's own collection, filed after a fit on a sample)."""

    def __init__(self, n_neighbors: int = 10, outlier_quantile: float | None = 0.01, seed: int = 0,
                 held_quantile: float | None = None):
        check_held_quantile(held_quantile)
        self.n_neighbors, self.outlier_quantile, self.seed = n_neighbors, outlier_quantile, seed
        self.held_quantile = held_quantile

    def fit(self, vectors: np.ndarray, clusters: np.ndarray, probabilities: np.ndarray, map_xy: np.ndarray,
            image_ids: np.ndarray) -> "Predictor":
        """Index ``vectors``: an array, or a ``ShardedVectors`` view, which is read a batch at a time
        (a million 512-d vectors are never all in memory as float32)."""
        if isinstance(vectors, np.ndarray):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.clusters_ = np.asarray(clusters, dtype=np.int64)
        self.probabilities_ = np.asarray(probabilities, dtype=np.float32)
        self.map_ = np.asarray(map_xy, dtype=np.float32).reshape(-1, 2)
        self.image_ids_ = np.asarray(image_ids, dtype=np.int64)
        self.active_ = np.ones(len(self.image_ids_), dtype=bool)
        self.index_ = build_index(vectors, self.seed)
        self._start_added(vectors.shape[1])
        self.min_similarity_, self.far_similarity_ = self._outlier_threshold(vectors)
        self._start_members(len(self.clusters_))
        self.mean_ = _sample_mean(vectors, self.seed)
        if self.held_quantile:
            self._measure_members()
            self.unseen()  # measured once here and saved with the predictor, not in each process that files
        return self

    # -- a living collection: rows added, relabelled or retired without refitting -------------------

    def extend(self, vectors: np.ndarray, clusters: np.ndarray, probabilities: np.ndarray, map_xy: np.ndarray,
               image_ids: np.ndarray) -> "Predictor":
        """Add filed images as training rows, so later predictions see them. The fitted index is
        left as it is (a loaded one is memory-mapped, read-only): new rows go into an exact index
        beside it, searched with it, and are kept in ``added_`` to persist."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.extra_.add(vectors)
        self.added_ = np.concatenate([self.added_, vectors])
        self.clusters_ = np.concatenate([self.clusters_, np.asarray(clusters, dtype=np.int64)])
        self.probabilities_ = np.concatenate([self.probabilities_, np.asarray(probabilities, dtype=np.float32)])
        self.map_ = np.concatenate([self.map_, np.asarray(map_xy, dtype=np.float32).reshape(-1, 2)])
        self.image_ids_ = np.concatenate([self.image_ids_, np.asarray(image_ids, dtype=np.int64)])
        self.active_ = np.concatenate([self.active_, np.ones(len(vectors), dtype=bool)])
        # Filed images are not measured: the bars stay those of the members the clusters were fit on.
        self.member_stats_ = np.concatenate([self.member_stats_, np.full((len(vectors), N_STATS), np.nan)])
        self.mean_dot_ = np.concatenate([self.mean_dot_, vectors @ self.mean_ if self.mean_ is not None
                                         else np.full(len(vectors), np.nan)])
        self._bars = None
        return self

    def rows_of(self, image_ids: np.ndarray) -> np.ndarray:
        """Training rows of catalogue ``image_ids`` (active rows only; -1 where absent)."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        active = np.flatnonzero(self.active_)  # a rewritten file has a retired row and a new one
        if not len(active):
            return np.full(len(image_ids), -1, dtype=np.int64)
        ids = self.image_ids_[active]
        order = np.argsort(ids, kind="stable")
        found = np.clip(np.searchsorted(ids[order], image_ids), 0, len(order) - 1)
        rows = active[order[found]]
        return np.where(self.image_ids_[rows] == image_ids, rows, -1)

    def relabel(self, rows: np.ndarray, clusters: np.ndarray, probabilities: np.ndarray,
                map_xy: np.ndarray | None = None) -> "Predictor":
        """Give training ``rows`` new clusters and membership probabilities (e.g. unclustered images
        joining a new cluster, an edit's merge or move) and, with ``map_xy`` (len(rows), 2), new
        places on the 2-D map."""
        rows = np.asarray(rows, dtype=np.int64)
        changed = rows[self.clusters_[rows] != np.asarray(clusters)]
        self.clusters_[rows] = clusters
        self.probabilities_[rows] = probabilities
        if map_xy is not None:
            self.map_[rows] = map_xy
        self.member_stats_[changed] = np.nan  # measured again, as members of their new cluster, when needed
        self.direction_ids_, self._bars = None, None
        self.left_out_, self.unseen_ = None, None
        return self

    def retire(self, rows: np.ndarray) -> "Predictor":
        """Stop ``rows`` from voting (their files were removed); faiss keeps them, unweighted."""
        self.active_[rows] = False
        self.direction_ids_, self._bars = None, None
        self.left_out_, self.unseen_ = None, None
        return self

    # -- open-set tests: each cluster's members measured as if new (see ``openset``) ------------------

    def _start_members(self, n: int) -> None:
        # Per training row: the openset statistics (density, agreement, whether its leave-one-out
        # vote picks its own cluster, centred density); NaN where not measured.
        self.member_stats_ = np.full((n, N_STATS), np.nan)
        # The mean of the run's unit embeddings, and each row's inner product with it (NaN until a
        # search first meets the row: computing all of them would read every vector again).
        self.mean_: np.ndarray | None = None
        self.mean_dot_ = np.full(n, np.nan)
        self.direction_ids_: np.ndarray | None = None  # clusters, and their centred mean directions
        self.directions_ = np.zeros((0, 0))
        self._bars: tuple[ClusterBars, Calibration] | None = None
        self._bars_quantile: float | None = None
        # Run p-values of members filed with their own cluster left out (``unseen``); kept until the
        # clusters change (filed rows added by ``extend`` leave them as they are).
        self.left_out_: np.ndarray | None = None
        self.unseen_: UnseenCalibration | None = None

    def _mean(self) -> np.ndarray:
        if self.mean_ is None:  # a predictor saved before the centred tests: the mean of a sample
            sample = np.random.default_rng(self.seed).choice(len(self.clusters_), min(len(self.clusters_), 5_000),
                                                             replace=False)
            self.mean_ = self._vectors_of(np.sort(sample)).mean(axis=0)
        return self.mean_

    def _centred_rank(self, vectors: np.ndarray, similarity: np.ndarray, rows: np.ndarray,
                      valid: np.ndarray) -> np.ndarray:
        """The density rank's centred similarity of each of ``vectors`` among its neighbours ``rows``."""
        self._mean()
        unknown = np.unique(rows[valid & np.isnan(self.mean_dot_[rows])])
        if len(unknown):
            self.mean_dot_[unknown] = self._vectors_of(unknown) @ self.mean_
        centred = centred_similarity(similarity, vectors @ self.mean_, self.mean_dot_[rows],
                                     float(self.mean_ @ self.mean_))
        return rank_value(centred, valid, density_rank(self.n_neighbors))

    def _measure_members(self) -> None:
        """Measure up to ``MEMBERS_MEASURED`` members of each cluster that has fewer measured."""
        rows = rows_to_measure(self.clusters_, self.active_, self.member_stats_[:, 0], self.seed)
        k = min(self.n_neighbors, len(self.clusters_) - 1)
        if not len(rows) or k < 1:
            return
        for start in range(0, len(rows), 4096):
            chunk = rows[start:start + 4096]
            similarity, found = self.neighbours(self._vectors_of(chunk), k + 1)
            similarity, found = without_self(similarity, found, chunk, k)
            voted = vote(similarity, found, self.clusters_, self.probabilities_, self.active_,
                         density_rank(self.n_neighbors))
            stats = np.empty((len(chunk), N_STATS))
            stats[:, DENSITY], stats[:, AGREEMENT] = voted.density, voted.share
            stats[:, CORRECT] = voted.clusters == self.clusters_[chunk]
            stats[:, CENTRED] = self._centred_rank(self._vectors_of(chunk), similarity, voted.neighbours,
                                                   (found >= 0) & self.active_[voted.neighbours])
            stats[:, TYPICAL] = np.nan  # once the cluster's members are all measured: see _directions
            self.member_stats_[chunk] = stats
        self._bars = None

    def _vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of training ``rows`` (from the index: float16 or 8-bit above
        ``neighbours.EXACT_UP_TO``)."""
        fitted = self.index_.ntotal
        out = np.empty((len(rows), self.index_.d), dtype=np.float32)
        early = rows < fitted
        if early.any():
            out[early] = self.index_.reconstruct_batch(rows[early].astype(np.int64))
        if (~early).any():
            out[~early] = self.added_[rows[~early] - fitted]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def bars(self) -> tuple[ClusterBars, Calibration]:
        """The per-cluster bars at ``held_quantile`` and the probability calibration, measuring
        clusters that lack measured members first (a predictor saved before these tests existed,
        clusters proposed by an update)."""
        # Measured afresh when the held quantile was changed since (it may be set after the fit, and
        # the fit now measures the bars at once).
        if self._bars is None or self._bars_quantile != self.held_quantile:
            self._bars_quantile = self.held_quantile
            self._measure_members()
            self._directions()
            stats, usable = self.member_stats_, self.active_.copy()
            bars = cluster_bars(np.where(usable, self.clusters_, NOISE), stats, self.held_quantile or 0.0)
            measured = usable & np.isfinite(stats).all(axis=1) & (self.clusters_ != NOISE)
            self._bars = bars, fit_calibration(stats[measured, AGREEMENT], stats[measured, CORRECT] > 0.5)
        return self._bars

    def unseen(self) -> UnseenCalibration:
        """The factor on filed images' membership probabilities for how typical they are of the run
        (``openset.UnseenCalibration``), from members filed with their own cluster left out."""
        if self.unseen_ is None or self.unseen_.quantile != (self.held_quantile or 0.0):
            bars, _ = self.bars()
            if self.left_out_ is None:
                self.left_out_ = self._leave_clusters_out(bars)
            self.unseen_ = fit_unseen(self.left_out_, self.held_quantile or 0.0)
        return self.unseen_

    def _leave_clusters_out(self, bars: ClusterBars) -> np.ndarray:
        """Run p-values (``ClusterBars.run_p_value``) of up to ``LEFT_OUT_PER_CLUSTER`` members of each
        cluster, filed among the other clusters' images as an image of a kind the run lacks would be;
        0 for those such filing would hold as far, unclustered, or with no other image near."""
        rows = left_out_rows(self.clusters_, self.active_, self.seed)
        k = min(self.n_neighbors, len(self.clusters_) - 1)
        out = np.zeros(len(rows))
        if k < 1:
            return out
        for start in range(0, len(rows), 4096):
            chunk = rows[start:start + 4096]
            vectors = self._vectors_of(chunk)
            similarity, found = self.neighbours(vectors, min(k + LEFT_OUT_DEPTH, len(self.clusters_)))
            safe = np.maximum(found, 0)
            usable = (found >= 0) & self.active_[safe] & (self.clusters_[safe] != self.clusters_[chunk][:, None])
            similarity, found, enough = others_only(similarity, found, usable, k)
            voted = vote(similarity, found, self.clusters_, self.probabilities_, self.active_,
                         density_rank(self.n_neighbors))
            stats = np.full((len(chunk), N_STATS), np.nan)
            stats[:, DENSITY], stats[:, AGREEMENT] = voted.density, voted.share
            stats[:, CENTRED] = self._centred_rank(vectors, similarity, voted.neighbours, found >= 0)
            stats[:, TYPICAL] = self._typicality(vectors, voted.clusters)
            position = bars.lookup(voted.clusters)
            held = (~enough | (voted.clusters == NOISE) | (position < 0)
                    | (similarity[:, 0] < self.far_similarity_))
            p = bars.run_p_value(combined(bars.p_values(position, stats)))
            out[start:start + len(chunk)] = np.where(held, 0.0, p)
        return out

    def _directions(self) -> None:
        """Each cluster's centred mean direction from its measured members, and their typicality."""
        rows = np.flatnonzero(self.active_ & (self.clusters_ != NOISE)
                              & np.isfinite(self.member_stats_[:, DENSITY]))
        if self.direction_ids_ is not None and not np.isnan(self.member_stats_[rows, TYPICAL]).any():
            return
        units = centred_units(self._vectors_of(rows), self._mean())
        self.direction_ids_, self.directions_, own = typicality(units, self.clusters_[rows])
        self.member_stats_[rows, TYPICAL] = own

    def _typicality(self, vectors: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        """Centred similarity of each of ``vectors`` to its cluster's direction (-1: no direction)."""
        ids = self.direction_ids_
        if ids is None or not len(ids):
            return np.full(len(clusters), -1.0)
        found = np.clip(np.searchsorted(ids, clusters), 0, len(ids) - 1)
        lean = (centred_units(vectors, self._mean()) * self.directions_[found]).sum(axis=1)
        return np.where(ids[found] == clusters, lean, -1.0)

    def _outlier_threshold(self, vectors: np.ndarray) -> tuple[float, float]:
        """(the far bar of the vote-only filing, its half-the-median part alone): with the per-cluster
        tests on, only the second holds images as far from every image (the first, the 1% quantile
        of the run's nearest similarities, held 3% of unseen photo crops that their own clusters'
        bars file)."""
        n = len(vectors)
        if n < 3:
            return -1.0, -1.0
        rng = np.random.default_rng(self.seed)
        # Measured on clustered images only: unclustered ones sit far from everything, and letting
        # them set the bar would file background noise into clusters.
        pool = np.flatnonzero(self.clusters_ != NOISE)
        pool = pool if len(pool) >= 3 else np.arange(n)
        sample = vectors[rng.choice(pool, size=min(len(pool), 2000), replace=False)]
        similarity, _ = self.neighbours(sample, 2)
        nearest = similarity[:, 1]  # column 0 is the point itself
        # Half the typical nearest-image similarity also bounds it: a collection whose clusters
        # swallowed background noise would otherwise set the bar at the noise's own level.
        half_median = 0.5 * float(np.median(nearest))
        if self.outlier_quantile is None:
            return half_median, half_median
        return float(max(np.quantile(nearest, self.outlier_quantile), half_median)), half_median

    def _start_added(self, d: int) -> None:
        self.added_ = np.zeros((0, d), dtype=np.float32)
        self.extra_ = exact_index(d)

    def neighbours(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarity, training row) of each vector's ``k`` nearest training rows, best
        first, over the fitted index and the rows added since; rows are -1 where fewer were found."""
        require_fitted(self, "index_")
        similarity, rows = search(self.index_, vectors, k)
        if not self.extra_.ntotal:
            return similarity, rows
        extra_similarity, extra_rows = search(self.extra_, vectors, min(k, self.extra_.ntotal))
        similarity = np.concatenate([np.where(rows >= 0, similarity, -np.inf), extra_similarity], axis=1)
        rows = np.concatenate([rows, extra_rows + self.index_.ntotal], axis=1)
        best = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        similarity, rows = np.take_along_axis(similarity, best, 1), np.take_along_axis(rows, best, 1)
        return np.where(np.isfinite(similarity), similarity, -1.0), np.where(np.isfinite(similarity), rows, -1)

    def predict(self, vectors: np.ndarray, names: dict[int, str] | None = None, together: bool = True) -> Prediction:
        """File L2-normalised ``vectors`` (m, d). ``names`` (cluster id -> name) only words the reasons.
        ``together``: with the open-set tests on, an image whose nearest images are mostly held images
        of the same batch is held with them (``openset.held_with_group``); False files each image as if
        it came alone."""
        require_fitted(self, "index_")
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        m, k = len(vectors), min(self.n_neighbors, len(self.clusters_))
        similarity, neighbours = self.neighbours(vectors, k)
        voted = vote(similarity, neighbours, self.clusters_, self.probabilities_, self.active_,
                     density_rank(self.n_neighbors))
        clusters, share, safe, weights = voted.clusters.copy(), voted.share, voted.neighbours, voted.weights
        probability = voted.strength.copy()
        total = np.maximum(weights.sum(axis=1), 1e-12)
        x, y = (weights[..., None] * self.map_[safe]).sum(axis=1).T / total
        reasons = [f"{share[i]:.0%} of the {k} nearest images (weighted) are in this cluster" for i in range(m)]
        held_by = np.full(m, "", dtype=object)
        held_by[clusters == NOISE] = HELD_UNCLUSTERED
        valid = (neighbours >= 0) & self.active_[safe]
        typical = np.ones(m)  # the open-set factor on each probability (``openset.UnseenCalibration``)
        if self.held_quantile:
            stats = np.empty((m, N_STATS))
            stats[:, DENSITY], stats[:, AGREEMENT], stats[:, CORRECT] = voted.density, share, np.nan
            stats[:, CENTRED] = self._centred_rank(vectors, similarity, safe, valid)
            self.bars()
            stats[:, TYPICAL] = self._typicality(vectors, clusters)
            probability, typical, reasons = self._open_set(clusters, stats, held_by, k, names or {})
        probability[clusters == NOISE] = 0.0

        # The nearest neighbour that still votes (a removed image's row stays in faiss, retired).
        first = valid.argmax(axis=1)
        found = valid[np.arange(m), first]
        top = np.where(found, similarity[np.arange(m), first], -1.0)
        nearest = safe[np.arange(m), first]
        same = top >= SAME_IMAGE
        clusters[same] = self.clusters_[nearest[same]]
        probability[same] = self.probabilities_[nearest[same]]
        x[same], y[same] = self.map_[nearest[same], 0], self.map_[nearest[same], 1]
        held_by[same] = np.where(clusters[same] == NOISE, HELD_UNCLUSTERED, "")
        far_bar = self.far_similarity_ if self.held_quantile else self.min_similarity_
        far = (top < far_bar) & ~same
        clusters[far], probability[far], held_by[far] = NOISE, 0.0, HELD_FAR
        clusters[held_by != ""], probability[held_by != ""] = NOISE, 0.0
        if together and self.held_quantile and m > 1 and (held_by != "").any():
            scale = self._hold_groups(vectors, similarity, neighbours, clusters, held_by, (held_by == "") & ~same,
                                      reasons)
            # Both factors say "perhaps of a kind the run lacks": the smaller one counts, not both.
            probability *= np.minimum(1.0, scale / np.maximum(typical, 1e-12))
            clusters[held_by != ""], probability[held_by != ""] = NOISE, 0.0
        for i in range(m):
            if same[i]:
                reasons[i] = "identical to an image of the run: its stored assignment"
            elif far[i]:
                reasons[i] = (f"unassigned: far from every image of the run (nearest similarity {top[i]:.2f} "
                              f"< {far_bar:.2f})")
            elif held_by[i] == HELD_UNCLUSTERED:
                reasons[i] = "unassigned: most of its nearest images are unclustered"
        return Prediction(clusters.astype(np.int64), np.clip(probability, 0, 1), x, y,
                          self.image_ids_[nearest], top.astype(np.float64), reasons, safe, weights,
                          tuple(str(h) for h in held_by))

    def _open_set(self, clusters: np.ndarray, stats: np.ndarray, held_by: np.ndarray, k: int,
                  names: dict[int, str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Hold points whose combined score among their cluster's members is above the bar (``held_by``
        updated in place, by the test with the smallest p-value); the calibrated membership
        probability, its typicality factor (``openset.UnseenCalibration``) and the reason of each point."""
        bars, calibration = self.bars()
        unseen = self.unseen()
        position = bars.lookup(clusters)
        measured = (position >= 0) & (clusters != NOISE)
        p_values = bars.p_values(position, stats)
        score = combined(p_values)
        held = measured & (score > bars.bar)
        worst = np.asarray(TESTED)[p_values.argmin(axis=1)]
        codes = {DENSITY: HELD_DENSITY, CENTRED: HELD_DENSITY, TYPICAL: HELD_TYPICAL, AGREEMENT: HELD_AGREEMENT}
        for column, code in codes.items():
            held_by[held & (worst == column)] = code
        share = stats[:, AGREEMENT]
        # How often the vote is right for an image of the run's kinds, times how likely this one is of
        # them, given how typical it is.
        run_p = bars.run_p_value(score)
        typical = np.where(measured, unseen(run_p), 1.0)
        probability = calibration(share) * typical
        reasons = []
        for i, cluster in enumerate(clusters.tolist()):
            if not measured[i]:
                reasons.append(f"{share[i]:.0%} of the {k} nearest images (weighted) are in this cluster")
                continue
            label = f"“{names[cluster]}”" if names.get(cluster) else f"cluster {cluster}"
            reason = self._reason(bars, int(position[i]), stats[i], int(worst[i]) if held[i] else -1, label, k)
            if not held[i] and typical[i] < 0.995:
                reason += (f"; together its tests make it less typical than {1 - run_p[i]:.0%} of the run's members "
                           f"are of their own clusters, as images of a kind the run lacks often are: its "
                           f"probability is {typical[i]:.2f} × the vote's")
            reasons.append(reason)
        return probability, typical, reasons

    def _reason(self, bars: ClusterBars, position: int, stats: np.ndarray, failed: int, label: str, k: int) -> str:
        """Which test a point failed most (held), or how it sits among its cluster's own members (filed)."""
        nth = f"{_ordinal(density_rank(self.n_neighbors))}-nearest similarity"
        together = (f"; its four tests together make it less typical than {1 - (self.held_quantile or 0):.0%} of "
                    "the run's members are of their own clusters")
        if failed == DENSITY:
            return (f"held: its {nth} {stats[DENSITY]:.2f} is below "
                    f"{bars.share_above(position, DENSITY, stats[DENSITY]):.0%} of {label}'s own members{together}")
        if failed == CENTRED:
            return (f"held: its {nth} {stats[CENTRED]:.2f}, once what all the run's images share is taken away, is "
                    f"below {bars.share_above(position, CENTRED, stats[CENTRED]):.0%} of {label}'s own members"
                    f"{together}")
        if failed == TYPICAL:
            return (f"held: it leans {stats[TYPICAL]:.2f} towards what {label}'s own members have in common (once "
                    f"what all the run's images share is taken away), less than "
                    f"{bars.share_above(position, TYPICAL, stats[TYPICAL]):.0%} of them do{together}")
        if failed == AGREEMENT:
            return (f"held: only {stats[AGREEMENT]:.0%} of its {k} nearest images are in {label}, less than for "
                    f"{bars.share_above(position, AGREEMENT, stats[AGREEMENT]):.0%} of its own members{together}")
        return (f"its {nth} {stats[DENSITY]:.2f} is above "
                f"{1 - bars.share_above(position, DENSITY, stats[DENSITY]):.0%} of {label}'s own members, and "
                f"{stats[AGREEMENT]:.0%} of its {k} nearest images are in it")

    def _hold_groups(self, vectors: np.ndarray, similarity: np.ndarray, rows: np.ndarray, clusters: np.ndarray,
                     held_by: np.ndarray, open_: np.ndarray, reasons: list[str]) -> np.ndarray:
        """Hold filed images of this batch whose nearest images are more held images of the batch than
        any cluster's (``openset.held_with_group``); ``clusters``, ``held_by`` and ``reasons`` in place.
        ``open_``: the images that may be held so (filed by the tests, not identical to a run image).
        Returns the factor on each image's membership probability (``openset.held_neighbour_scale``)."""
        m, k = rows.shape
        scale = np.ones(m)
        filed = np.flatnonzero(open_)
        valid = (rows >= 0) & self.active_[np.maximum(rows, 0)]
        kth = np.where(valid, similarity, -1.0).min(axis=1, initial=1.0)
        index = exact_index(vectors.shape[1])
        index.add(vectors)
        # Only images with a held image of the batch nearer than their k-th image of the run can be
        # held with it or lose probability: a batch mostly filed (or mostly held) searches little.
        searched = np.zeros(m, dtype=bool)
        while True:
            held_rows = np.flatnonzero(held_by != "")
            near = filed[~searched[filed]]
            if not len(held_rows) or not len(near):
                break
            near = near[(vectors[near] @ vectors[held_rows].T).max(axis=1) > kth[near]]
            if not len(near):
                break
            searched[near] = True
            chosen = np.flatnonzero(searched)
            held, share, batch_rows = self._group_step(index, vectors, similarity, rows, valid, clusters, held_by,
                                                       chosen)
            for j in np.flatnonzero(held[chosen] & (held_by[chosen] == "")):
                from_batch = (batch_rows[j] >= 0) & (held_by[np.maximum(batch_rows[j], 0)] != "")
                reasons[chosen[j]] = (
                    f"held with its group: {int(from_batch.sum())} of its {k} nearest images are new images held "
                    "in the same batch, and together they outweigh every cluster's (a group of its own, which an "
                    "update can propose as a new cluster)")
            held_by[chosen[held[chosen] & (held_by[chosen] == "")]] = HELD_GROUP
            scale[chosen] = held_neighbour_scale(share)
        return scale

    def _group_step(self, index: Any, vectors: np.ndarray, similarity: np.ndarray, rows: np.ndarray,
                    valid: np.ndarray, clusters: np.ndarray, held_by: np.ndarray,
                    chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``openset.held_with_group`` for batch images ``chosen``, their k nearest from the run's
        neighbours and the batch's together; also the batch rows among those neighbours."""
        m, k = rows.shape
        own, found = search(index, vectors[chosen], min(k + 1, m))
        own, found = without_self(own, found, chosen, min(k, m - 1))
        merged = np.concatenate([np.where(valid[chosen], similarity[chosen], -np.inf),
                                 np.where(found >= 0, own, -np.inf)], axis=1)
        # Batch rows as -2 - row, beside the run's rows.
        which = np.concatenate([np.where(valid[chosen], rows[chosen], -1), np.where(found >= 0, -2 - found, -1)],
                               axis=1)
        best = np.argsort(-merged, axis=1, kind="stable")[:, :k]
        merged, which = np.take_along_axis(merged, best, 1), np.take_along_axis(which, best, 1)
        weights = np.where(np.isfinite(merged), np.clip(merged, 0.0, None), 0.0)
        batch_rows = np.where(which <= -2, -2 - which, -1)
        neighbour_clusters = np.where(which >= 0, self.clusters_[np.maximum(which, 0)], NOISE)
        held, share = held_with_group(neighbour_clusters, batch_rows, weights, clusters, held_by != "", chosen)
        return held, share, batch_rows

    # -- persistence: plain arrays, a serialised faiss index and JSON; no pickle --------------------

    def state(self) -> tuple[dict[str, np.ndarray], Any, dict[str, Any]]:
        """(arrays, faiss index, parameters) for the store to write: the whole index, rows added
        since the fit included. The index is the object itself (``faiss.write_index`` streams it to
        a file; serialising a million-image index to bytes would hold it twice more in memory)."""
        arrays, params = self.delta_state()
        arrays["added_vectors"] = np.zeros((0, self.added_.shape[1]), dtype=np.float32)
        params["index_rows"] = len(self.clusters_)
        index = self.index_
        if len(self.added_):
            # A copy that owns its memory (a loaded index is mapped read-only) takes the added rows.
            index = copy_index(self.index_)
            index.add(self.added_)
        return arrays, index, params

    def delta_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, parameters) to save beside an index file that holds only the rows before
        ``added_``: loading adds ``added_vectors`` back. Saving a filed batch then writes kilobytes,
        not the whole index again."""
        arrays = {"clusters": self.clusters_, "membership_probability": self.probabilities_, "map": self.map_,
                  "image_ids": self.image_ids_, "active": self.active_, "added_vectors": self.added_,
                  "member_stats": self.member_stats_.astype(np.float32), "mean_dot": self.mean_dot_.astype(np.float32),
                  "mean": self.mean_ if self.mean_ is not None else np.zeros(0),
                  "direction_ids": self.direction_ids_ if self.direction_ids_ is not None else np.zeros(0, np.int64),
                  "directions": self.directions_,
                  "left_out": self.left_out_ if self.left_out_ is not None else np.zeros(0)}
        params = {"n_neighbors": self.n_neighbors, "outlier_quantile": self.outlier_quantile, "seed": self.seed,
                  "held_quantile": self.held_quantile, "p_values": P_VALUES,
                  "min_similarity": self.min_similarity_, "far_similarity": self.far_similarity_, "index": type(self.index_).__name__,
                  "index_rows": len(self.clusters_) - len(self.added_)}
        return arrays, params

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], index: Any, params: dict[str, Any]) -> "Predictor":
        """A predictor from ``state()``/``delta_state()`` output; ``index`` is a faiss index, its
        bytes, or the path of its file, which is memory-mapped (loading a 100k-image index then
        takes milliseconds, not a quarter of a second, and pages are read as searches need them)."""
        # A predictor saved before the open-set tests existed gets them, measured on first use.
        predictor = cls(params["n_neighbors"], params["outlier_quantile"], params["seed"],
                        params.get("held_quantile", DEFAULT_HELD_QUANTILE))
        predictor.clusters_ = np.asarray(arrays["clusters"], dtype=np.int64)
        predictor.probabilities_ = np.asarray(arrays["membership_probability"], dtype=np.float32)
        predictor.map_ = np.asarray(arrays["map"], dtype=np.float32)
        predictor.image_ids_ = np.asarray(arrays["image_ids"], dtype=np.int64)
        predictor.active_ = np.asarray(arrays.get("active", np.ones(len(predictor.image_ids_), dtype=bool)), bool)
        if is_index(index):
            predictor.index_ = index
        elif isinstance(index, (bytes, bytearray, memoryview)):
            predictor.index_ = index_from_bytes(index)
        else:
            # Never add to this one: faiss aborts the process on a write to a mapped index.
            predictor.index_ = read_index(index, mapped=True)
        set_nprobe(predictor.index_)
        predictor._start_added(predictor.index_.d)
        added = arrays.get("added_vectors")
        if added is not None and len(added):
            predictor.added_ = np.ascontiguousarray(added, dtype=np.float32)
            predictor.extra_.add(predictor.added_)
        rows = predictor.index_.ntotal + predictor.extra_.ntotal
        if rows != len(predictor.clusters_):
            raise ValueError(f"predictor index holds {rows} rows for {len(predictor.clusters_)} "
                             "images; its files are from different runs")
        predictor.min_similarity_ = float(params["min_similarity"])
        predictor.far_similarity_ = float(params.get("far_similarity", params["min_similarity"]))
        predictor._start_members(rows)
        stats = arrays.get("member_stats")
        if stats is not None and np.shape(stats) == (rows, N_STATS):
            predictor.member_stats_ = np.asarray(stats, dtype=np.float64)
        ids, directions = arrays.get("direction_ids"), arrays.get("directions")
        if ids is not None and directions is not None and len(ids) and np.shape(directions)[0] == len(ids):
            predictor.direction_ids_ = np.asarray(ids, dtype=np.int64)
            predictor.directions_ = np.asarray(directions, dtype=np.float64)
        left_out = arrays.get("left_out")
        # Run p-values saved by a predictor that ranked statistics another way are measured again.
        if left_out is not None and len(left_out) and params.get("p_values") == P_VALUES:
            predictor.left_out_ = np.asarray(left_out, dtype=np.float64)
        mean, mean_dot = arrays.get("mean"), arrays.get("mean_dot")
        if mean is not None and len(mean) == predictor.index_.d:
            predictor.mean_ = np.asarray(mean, dtype=np.float64)
            if mean_dot is not None and len(mean_dot) == rows:
                predictor.mean_dot_ = np.asarray(mean_dot, dtype=np.float64)
        return predictor

    def describe(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.delta_state()[1]))


MEAN_SAMPLE = 20_000  # rows the collection's mean direction is measured on


def _sample_mean(vectors: np.ndarray, seed: int) -> np.ndarray:
    """Mean of up to ``MEAN_SAMPLE`` of ``vectors`` (an array or a ``ShardedVectors`` view), as float64."""
    n = len(vectors)
    if n <= MEAN_SAMPLE and isinstance(vectors, np.ndarray):
        # Every row, in order: summed in float64 straight from the array, the same sums as of a float64
        # copy of its rows, without the two copies (new memory is slow to touch here: 0.1 s at 1,797 x 1,280).
        return vectors.mean(axis=0, dtype=np.float64)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, MEAN_SAMPLE), replace=False))
    return np.asarray(vectors[rows]).mean(axis=0, dtype=np.float64)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
