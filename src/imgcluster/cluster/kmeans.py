"""k-means: exactly ``k`` clusters, no noise. scikit-learn's up to ``FAISS_FROM`` points, faiss's beyond.

faiss trains on at most 256 points per centroid and assigns the rest in one search: on 150,000
512-d vectors with k=100 it took ~4 s here where scikit-learn's took ~40 s (2 cores).

scikit-learn's k-means keeps the best (lowest inertia) of up to 10 restarts from different k-means++
seeds, as many as fit in ``RESTART_BUDGET``: one start lands in a poor local optimum often enough to
move NMI on the digits by +-0.02 between seeds (true k, UMAP space: 0.757-0.786 with one start,
0.784-0.787 with 10). In a 5-d clustering space ten restarts cost milliseconds; on raw 1,280-d
embeddings with k=100 (the ``gumgum`` preset) one start is already the expensive part, so it keeps one.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..neighbours import kmeans_centroids, nearest_l2
from ..params import Interval, Parameters, require_fitted

log = logging.getLogger(__name__)

FAISS_FROM = 50_000
MAX_RESTARTS = 10
RESTART_BUDGET = 10**8  # points x dimensions x k summed over restarts (one Lloyd step of each ~ 0.1 s here)


class KMeansClusterer:
    """k-means with k-means++ seeding, the best of ``restarts(n, d, k)`` starts (scikit-learn) or one
    (faiss, from ``FAISS_FROM`` points). The membership probability is the assignment margin
    ``1 - d_nearest / d_second``: 1 deep inside a cluster, 0 on the border between two."""

    parameters: ClassVar[Parameters] = {"k": [Interval(int, 1), None], "seed": [Interval(int, 0)]}

    def __init__(self, k: int | None = None, seed: int = 0):
        if k is None:
            raise ConfigError("kmeans needs k, the number of clusters: pass --k N (or use --method hdbscan, "
                              "which finds the number itself).")
        self.k, self.seed = k, seed

    def fit(self, x: np.ndarray) -> "KMeansClusterer":
        self.k_ = max(1, min(self.k, len(x)))
        if self.k_ < self.k:
            log.warning("k=%d is more than the %d images; using k=%d", self.k, len(x), self.k_)
        self.backend_ = "faiss" if len(x) >= FAISS_FROM else "scikit-learn"
        if self.backend_ == "faiss":
            self.restarts_ = 1
            self.centroids_ = _faiss_centroids(x, self.k_, self.seed)
        else:
            from sklearn.cluster import KMeans

            self.restarts_ = restarts(len(x), x.shape[1], self.k_)
            fitted = KMeans(n_clusters=self.k_, init=plus_plus_seeds, random_state=self.seed,
                            n_init=self.restarts_).fit(x)
            self.centroids_ = _means(x, fitted.labels_, fitted.cluster_centers_)
        self.labels_, self.probabilities_ = self.predict(x)
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid, and the assignment margin against the second nearest."""
        require_fitted(self, "centroids_")
        centroids = self.centroids_
        squared, nearest = nearest_l2(centroids, x, min(2, len(centroids)))
        distances = np.sqrt(np.maximum(squared, 0.0))
        margin = (np.ones(len(x)) if len(centroids) < 2 else
                  np.clip(1.0 - distances[:, 0] / np.maximum(distances[:, 1], 1e-12), 0.0, 1.0))
        return nearest[:, 0].astype(np.int64), margin

    def describe(self) -> dict[str, object]:
        return {"method": "kmeans", "k": getattr(self, "k_", self.k), "seed": self.seed,
                "backend": getattr(self, "backend_", None), "restarts": getattr(self, "restarts_", 1)}


def _means(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each cluster's mean point, summed in one fixed order (``centres`` where a cluster is empty).
    scikit-learn sums each thread's share of the points apart, so the last digits of its centres,
    and of every margin measured from them, change with the thread count; the labels do not."""
    means = np.asarray(centres, dtype=np.float64).copy()
    for cluster in np.unique(labels):
        means[cluster] = np.asarray(x[labels == cluster], dtype=np.float64).mean(axis=0)
    return means


def plus_plus_seeds(x: np.ndarray, n_clusters: int, random_state: np.random.RandomState) -> np.ndarray:
    """scikit-learn's k-means++ seeds (``sklearn.cluster.kmeans_plusplus``, unit weights, 2 + log k
    trials a centre), as an ``init`` callable of its ``KMeans``: the same draws from
    ``random_state`` and the same float32 distances, so the same seeds and clusters.

    Its own seeding asks scikit-learn's distance function for each new centre's trials, 0.3 ms of
    checks a call: 85% of the k-means candidates of auto mode (2 s of a 3,927-photo re-cluster, 240
    seedings). Here each point's coordinates and squared norm are widened to float64 once per
    seeding (up to 64 MB; beyond, once per call, as scikit-learn does), in the blocks scikit-learn's
    distances use, so every value is computed as it would be."""
    n = len(x)
    weights = np.ones(n, dtype=x.dtype)
    trials = 2 + int(np.log(n_clusters))
    distances = _SquaredDistances(x)
    centres = np.empty((n_clusters, x.shape[1]), dtype=x.dtype)
    first = random_state.choice(n, p=weights / weights.sum())
    centres[0] = x[first]
    closest = distances.to(x[[first]])
    potential = closest @ weights
    for c in range(1, n_clusters):
        draws = random_state.uniform(size=trials) * potential
        candidates = np.searchsorted(np.cumsum(weights * closest), draws)
        np.clip(candidates, None, closest.size - 1, out=candidates)
        to_candidates = distances.to(x[candidates])
        np.minimum(closest, to_candidates, out=to_candidates)
        potentials = to_candidates @ weights.reshape(-1, 1)
        best = np.argmin(potentials)
        potential, closest = potentials[best], to_candidates[best]
        centres[c] = x[candidates[best]]
    return centres


class _SquaredDistances:
    """Squared Euclidean distances from a few points to all of ``x``, valued as scikit-learn's
    ``euclidean_distances(points, x, squared=True)`` values them: for float32, in float64 over the
    blocks of ``x`` its batch size gives for that many points, then rounded to float32; for
    float64, directly. The float64 copies of ``x``'s blocks are kept between calls up to
    ``KEPT_FLOATS`` values (a seeding asks for every block again for each centre); beyond, each
    call widens them again, as scikit-learn does."""

    KEPT_FLOATS = 8_000_000  # 64 MB of float64

    def __init__(self, x: np.ndarray):
        self.x = x
        self.upcast = x.dtype == np.float32
        self.keep = x.size <= self.KEPT_FLOATS
        self._widened: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        if not self.upcast:
            self.norms = np.einsum("ij,ij->i", x, x)[None, :]

    def to(self, points: np.ndarray) -> np.ndarray:
        if not self.upcast:
            out = -2 * (points @ self.x.T)
            out += np.einsum("ij,ij->i", points, points)[:, None]
            out += self.norms
            return np.maximum(out, 0, out=out)
        from sklearn.utils import gen_batches

        out = np.empty((len(points), len(self.x)), dtype=np.float32)
        size = self._batch_size(len(points))
        for rows in gen_batches(len(points), size):
            wide = np.asarray(points[rows], dtype=np.float64)
            own = np.einsum("ij,ij->i", wide, wide)[:, None]
            for block in gen_batches(len(self.x), size):
                other, norms = self._widen(block)
                part = -2 * (wide @ other.T)
                part += own
                part += norms
                out[rows, block] = part
        return np.maximum(out, 0, out=out)

    def _batch_size(self, rows: int) -> int:
        """scikit-learn's batch size for ``rows`` points against ``x`` (``_euclidean_distances_upcast``)."""
        n, d = self.x.shape
        memory = max(((rows + n) * d + rows * n) / 10, 10 * 2**17)
        return max(int((-2 * d + np.sqrt((2 * d) ** 2 + 4 * memory)) / 2), 1)

    def _widen(self, block: slice) -> tuple[np.ndarray, np.ndarray]:
        key = (block.start, block.stop)
        if key in self._widened:
            return self._widened[key]
        wide = np.asarray(self.x[block], dtype=np.float64)
        found = wide, np.einsum("ij,ij->i", wide, wide)[None, :]
        if self.keep:
            self._widened[key] = found
        return found


def restarts(n: int, dimensions: int, k: int) -> int:
    """How many k-means++ starts scikit-learn's k-means keeps the best of: ``MAX_RESTARTS`` when they
    fit in ``RESTART_BUDGET``, fewer (at least one) as points x dimensions x k grows."""
    return int(max(1, min(MAX_RESTARTS, RESTART_BUDGET // max(1, n * dimensions * k))))


def _faiss_centroids(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import kmeans_plusplus

    x = np.ascontiguousarray(x, dtype=np.float32)
    # faiss starts from random points, which merges clusters that k-means++ keeps apart (ARI 0.72
    # against 1.0 on five clear blobs): seed it with scikit-learn's k-means++ on a sample.
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(len(x), 256 * k), replace=False)]
    start, _ = kmeans_plusplus(sample, k, random_state=seed)
    return kmeans_centroids(x, start, seed, niter=50)
