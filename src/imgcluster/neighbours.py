"""Nearest-neighbour indexes: the one module that imports faiss.

Every index imgcluster builds, searches or saves comes from here: exact (flat) inner-product and L2
indexes, inverted-file (IVF) indexes for big sets, binary (Hamming) indexes for perceptual hashes,
the predictor's projected index with exact re-ranking (``build_index``), the k-NN graph UMAP is
given (``knn_graph``), k-means centroids, and an index's bytes and files. The stages decide when a
set is big (their thresholds sit beside their measured figures); this module knows how to build it.

faiss is a required dependency (``faiss-cpu``), so there is no fallback. Its OpenMP threads are left
at faiss's default (one per core): the results do not depend on them (``tests/test_determinism.py``).

Scores: an inner-product index over unit vectors returns cosine similarities; ``search`` turns an L2
index's squared distances between unit vectors into the same similarities.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

INNER_PRODUCT = "inner_product"
L2 = "l2"
# IVF lists are trained on this many vectors each (faiss warns below 39).
TRAIN_PER_LIST = 40


def _faiss() -> Any:
    # Imported on first use: loading faiss costs ~0.1 s, and many commands never search.
    import faiss

    return faiss


# -- exact and IVF indexes ----------------------------------------------------------------------------


def exact_index(d: int, metric: str = INNER_PRODUCT) -> Any:
    """An empty exhaustive index over ``d``-dimensional float vectors (``metric``: ``INNER_PRODUCT``
    or ``L2``); add vectors with ``index.add``."""
    faiss = _faiss()
    return faiss.IndexFlatIP(d) if metric == INNER_PRODUCT else faiss.IndexFlatL2(d)


def ivf_index(vectors: np.ndarray, nlist: int, nprobe: int, codes: str = "flat", seed: int = 0) -> Any:
    """An empty inner-product IVF index of ``nlist`` lists, ``nprobe`` scanned per query, its lists
    trained on ``TRAIN_PER_LIST`` per list of ``vectors`` (n, d), a seeded sample. ``codes``: how the
    lists store vectors, ``"flat"`` (float32) or ``"sq8"`` (8 bits a dimension, a quarter of the memory)."""
    faiss = _faiss()
    d = vectors.shape[1]
    if codes == "sq8":
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    train_on_sample(index, vectors, TRAIN_PER_LIST * nlist, seed)
    index.nprobe = nprobe
    return index


def binary_index(entries: np.ndarray, exact_up_to: int, nprobe: int, seed: int = 0) -> Any:
    """An empty Hamming index over 64-bit codes ((n, 8) uint8 ``entries`` show its size and train it):
    exhaustive up to ``exact_up_to`` codes; beyond, √n IVF lists, ``nprobe`` scanned per query."""
    faiss = _faiss()
    if len(entries) <= exact_up_to:
        return faiss.IndexBinaryFlat(64)
    nlist = int(np.sqrt(len(entries)))
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, nlist)
    train_on_sample(index, entries, TRAIN_PER_LIST * nlist, seed)
    index.nprobe = nprobe
    return index


def train_on_sample(index: Any, vectors: np.ndarray, size: int, seed: int) -> None:
    """Train ``index`` on a seeded sample of ``size`` rows of ``vectors`` (all of them if fewer), in
    row order: an array or a ``ShardedVectors`` view, which is read only at the sampled rows."""
    n = len(vectors)
    rows = vectors[np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))]
    binary = rows.dtype == np.uint8  # 64-bit codes as 8 bytes each
    index.train(np.ascontiguousarray(rows) if binary else np.ascontiguousarray(rows, dtype=np.float32))


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity, row) of each query's ``k`` nearest rows, best first; rows are -1 where
    fewer than k were found."""
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    if index.metric_type == _faiss().METRIC_L2:
        scores = 1.0 - scores / 2.0  # squared distance between unit vectors
    return scores, rows


def nearest_l2(points: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(squared euclidean distance, row) of each query's ``k`` nearest of ``points`` (n, d), exactly."""
    index = exact_index(points.shape[1], L2)
    index.add(np.ascontiguousarray(points, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


# -- the predictor's index: a PCA projection searched, the full vectors re-ranking --------------------

EXACT_UP_TO = 5_000      # exact inner-product search up to this many images
FLAT_UP_TO = 50_000      # projected but exhaustive search up to this many
PROJECTED_DIM = 64
REFINE_FACTOR = 4
ADD_BATCH = 20_000
FP16_REFINE_UP_TO = 512 * 2**20  # bytes of float16 vectors (200k images at 1,280-d, 500k at 512-d)
_RANGE_MARGIN = 0.2


def build_index(vectors: np.ndarray, seed: int = 0) -> Any:
    """Nearest-neighbour index over L2-normalised ``vectors`` (n, d), an array or a ``ShardedVectors``
    view read ``ADD_BATCH`` rows at a time; see ``search`` for its scores.

    Small or low-dimensional sets get an exact inner-product index. Larger ones are searched in a
    ``PROJECTED_DIM``-d PCA projection (exhaustively up to ``FLAT_UP_TO`` images, through IVF lists
    beyond) and the ``REFINE_FACTOR`` x k candidates are re-ranked by their distance in the full
    space (float16, or 8 bits a dimension above ``FP16_REFINE_UP_TO`` bytes: see ``_refine_store``),
    so the k returned are those of exact search up to ~1e-4 in similarity when they are among the
    candidates. Measured at 150k synthetic 512-d vectors: 5x faster than IVF over the full vectors,
    the same votes as exact search.
    """
    faiss = _faiss()
    n, d = vectors.shape
    if n <= EXACT_UP_TO or d <= 1.5 * PROJECTED_DIM:
        index = faiss.IndexFlatIP(d)
        add_in_batches(index, vectors)
        return index
    if n <= FLAT_UP_TO:
        coarse = faiss.IndexFlatL2(PROJECTED_DIM)
    else:
        nlist = int(4 * np.sqrt(n))
        coarse = faiss.IndexIVFFlat(faiss.IndexFlatL2(PROJECTED_DIM), PROJECTED_DIM, nlist, faiss.METRIC_L2)
    # For unit vectors, L2 order is inner-product order, and L2 survives PCA's centring.
    projected = faiss.IndexPreTransform(faiss.PCAMatrix(d, PROJECTED_DIM), coarse)
    index = faiss.IndexRefine(projected, _refine_store(n, d))
    index.k_factor = REFINE_FACTOR
    train_on_sample(index, vectors, max(50_000, TRAIN_PER_LIST * int(4 * np.sqrt(n))), seed)
    set_nprobe(index)
    add_in_batches(index, vectors)
    return index


def _refine_store(n: int, d: int) -> Any:
    """The full-space vectors the candidates are re-ranked with. float16 needs no training and
    holds any vector added later. Beyond ``FP16_REFINE_UP_TO`` it is 8 bits a dimension (a
    million 1,280-d images: 1.3 GB instead of 2.6, which keeps the cluster job under 4 GiB),
    each dimension's range learnt on the training sample and widened by ``_RANGE_MARGIN`` on each
    side: a stored vector comes back at similarity > 0.9997, but rows added later whose values lie
    far outside those ranges (content unlike anything in the fit) are clipped and lose precision."""
    faiss = _faiss()
    if n * d * 2 <= FP16_REFINE_UP_TO:
        return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    store = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
    store.sq.rangestat, store.sq.rangestat_arg = faiss.ScalarQuantizer.RS_minmax, _RANGE_MARGIN
    return store


def add_in_batches(index: Any, vectors: np.ndarray) -> None:
    """Add ``vectors`` (an array or a ``ShardedVectors`` view) ``ADD_BATCH`` rows at a time, as float32."""
    for start in range(0, len(vectors), ADD_BATCH):
        index.add(np.ascontiguousarray(vectors[start:start + ADD_BATCH], dtype=np.float32))


def set_nprobe(index: Any) -> None:
    """Set the IVF lists scanned per query of a ``build_index`` index (one without IVF is left as it is)."""
    faiss = _faiss()
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # no IVF inside
        return
    # Measured at 150k noisy synthetic 512-d vectors (1,549 lists), against exact search: 8 lists
    # per query agree on 98.4% of votes (55k queries/s), 16 on 99.8% (37k/s), 32 on 100% (25k/s).
    ivf.nprobe = max(16, min(64, ivf.nlist // 48))


# -- the k-NN graph UMAP is given ---------------------------------------------------------------------

# Up to here the graph compares the full-width vectors: exact neighbours, and faster than the PCA-64
# projection, whose fit dominates (1,797 x 1280-d: 0.2 s full width vs 0.9 s PCA + 0.07 s search;
# 8,000: 3.0 s vs 4.4 s; 15,000: 11.9 s vs 6.6 s; 2 busy cores).
FULL_WIDTH_KNN_UP_TO = 8_000


# The re-ranking gathers each chunk's candidate vectors, (rows, candidates, d) floats, at most this
# many. Small enough for the allocator to reuse one block: a block of 1,000 rows (77 MB for 15
# candidates of 1,280-d) went back to the system after each chunk and was faulted in again, 0.5-0.6 s
# of a 1,797-point graph's 0.6-0.7 s on 2 cores (0.07 s with blocks of ~100 rows).
RERANK_BLOCK_FLOATS = 2_000_000


def rerank_chunk(n_candidates: int, dim: int) -> int:
    """Rows re-ranked at a time: their gathered candidates stay within ``RERANK_BLOCK_FLOATS``."""
    return max(1, RERANK_BLOCK_FLOATS // max(1, n_candidates * dim))


def knn_graph(x: np.ndarray, n_neighbors: int, metric: str = "cosine",
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) indices of each point's ``n_neighbors`` nearest points, itself first, and their
    ``metric`` distances ("cosine" or "euclidean"). Candidates from an exhaustive L2 search, re-ranked
    by the true distance: exact up to ``FULL_WIDTH_KNN_UP_TO`` points or 64 dimensions, beyond that
    searched in a 64-d PCA projection (3 x k candidates)."""
    n = len(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if x.shape[1] <= 64 or n <= FULL_WIDTH_KNN_UP_TO:  # exact: the re-ranking only settles rounding
        projected, n_candidates = x, n_neighbors
    else:
        from sklearn.decomposition import PCA

        projected = PCA(64, random_state=seed).fit_transform(x).astype(np.float32)
        n_candidates = min(n, 3 * n_neighbors)
    _, candidates = nearest_l2(projected, projected, n_candidates)
    indices = np.empty((n, n_neighbors), dtype=np.int64)
    distances = np.empty((n, n_neighbors), dtype=np.float32)
    chunk = rerank_chunk(n_candidates, x.shape[1])
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        near = x[candidates[rows]]
        if metric == "cosine":
            true = np.clip(1.0 - np.einsum("nd,nkd->nk", x[rows], near), 0.0, None)
        else:
            true = np.linalg.norm(near - x[rows, None, :], axis=2)
        true[candidates[rows] == np.arange(start, min(start + chunk, n))[:, None]] = 0.0  # self first
        order = np.argsort(true, axis=1, kind="stable")[:, :n_neighbors]
        indices[rows] = np.take_along_axis(candidates[rows], order, axis=1)
        distances[rows] = np.take_along_axis(true, order, axis=1)
    return indices, distances


# -- k-means centroids --------------------------------------------------------------------------------


def kmeans_centroids(x: np.ndarray, start: np.ndarray, seed: int, niter: int = 50) -> np.ndarray:
    """faiss's k-means on ``x`` (n, d) from the centroids ``start`` (k, d): (k, d) centroids. It trains
    on at most 256 points per centroid (a seeded sample), and logs nothing."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    model = _faiss().Kmeans(x.shape[1], len(start), niter=niter, seed=seed, verbose=False)
    model.train(x, init_centroids=np.ascontiguousarray(start, dtype=np.float32))
    return model.centroids


# -- an index's bytes and files -----------------------------------------------------------------------


def is_index(value: Any) -> bool:
    """Whether ``value`` is a (float) faiss index, rather than its bytes or a path to its file."""
    return isinstance(value, _faiss().Index)


def index_to_bytes(index: Any) -> bytes:
    """The index serialised, to store or copy."""
    return _faiss().serialize_index(index).tobytes()


def index_from_bytes(data: bytes | bytearray | memoryview) -> Any:
    """An index from ``index_to_bytes`` output (its own memory: rows may be added)."""
    return _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))


def copy_index(index: Any) -> Any:
    """A copy that owns its memory: rows may be added to it even when ``index`` is a mapped file
    (``clone_index`` would keep the mapping)."""
    faiss = _faiss()
    return faiss.deserialize_index(faiss.serialize_index(index))


def write_index(index: Any, path: str | os.PathLike[str]) -> None:
    """Stream ``index`` to the file ``path`` (a million-image index is never held twice as bytes)."""
    _faiss().write_index(index, os.fspath(path))


def read_index(path: str | Path, mapped: bool = True) -> Any:
    """The index in file ``path``; ``mapped``: memory-mapped (loading a 100k-image index takes
    milliseconds, not a quarter of a second, and pages are read as searches need them). Never add
    to a mapped index: faiss aborts the process on a write to it. A damaged file raises RuntimeError."""
    faiss = _faiss()
    return faiss.read_index(os.fspath(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0)
