"""Similar-image and text search: a vector index over one model's embeddings, keyed by content hash.

Up to ``EXACT_UP_TO`` vectors the index is exact (inner product over every vector: cosine
similarity, since embeddings are L2-normalised). Beyond, it is an inverted file (IVF) whose lists
hold 8-bit scalar-quantised vectors: a query scans ``nprobe`` of ``nlist`` lists, a quarter of the
memory of the float vectors. The chosen kind and its parameters are recorded with the index
(``describe``). New vectors are added without retraining; the caller rebuilds (``needs_rebuild``)
once the collection has outgrown what the index was built for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ConfigError
from .neighbours import exact_index, index_from_bytes, index_to_bytes, ivf_index

# One exact query over 100k 512-d vectors: 60 ms p50 on 2 shared cores, over 1M: 464 ms; IVF-SQ8 at
# 1M: 1.6 ms, recall@10 0.98 (bench/search.py).
EXACT_UP_TO = 250_000
# IVF: lists ~ 2 sqrt(n), trained on neighbours.TRAIN_PER_LIST vectors per list; a query scans
# NPROBE_SHARE of the lists, at least MIN_NPROBE.
MIN_NPROBE = 16
NPROBE_SHARE = 1 / 64
# Rebuild when the collection has grown to this multiple of the rows the index was built with.
REBUILD_GROWTH = 2.0


class VectorIndex:
    """Nearest vectors by cosine similarity. ``fit`` takes L2-normalised vectors (n, d) and one key
    per row (a content hash); ``search`` returns keys and similarities, best first.

    ``exact_up_to``: the largest collection searched exactly; above it an IVF index is built.
    ``nprobe``: IVF lists scanned per query (unset: ``NPROBE_SHARE`` of them, at least ``MIN_NPROBE``).
    """

    def __init__(self, exact_up_to: int = EXACT_UP_TO, nprobe: int | None = None, seed: int = 0):
        self.exact_up_to, self.nprobe, self.seed = exact_up_to, nprobe, seed

    def fit(self, vectors: np.ndarray, keys: Sequence[str]) -> "VectorIndex":
        vectors = _as_rows(vectors)
        if len(vectors) != len(keys):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        n, d = vectors.shape
        started = time.perf_counter()
        if n <= self.exact_up_to:
            self.index_ = exact_index(d)
            self.kind_, self.nlist_, self.nprobe_ = "exact", 0, 0
        else:
            self.nlist_ = int(2 * np.sqrt(n))
            self.nprobe_ = self.nprobe or max(MIN_NPROBE, int(self.nlist_ * NPROBE_SHARE))
            self.index_ = ivf_index(vectors, self.nlist_, self.nprobe_, codes="sq8", seed=self.seed)
            self.kind_ = "ivf-sq8"
        self.index_.add(vectors)
        self.keys_ = list(keys)
        self.built_rows_ = n
        self.build_seconds_ = time.perf_counter() - started
        return self

    def add(self, vectors: np.ndarray, keys: Sequence[str]) -> "VectorIndex":
        """Add rows without retraining (IVF lists take them as they are)."""
        vectors = _as_rows(vectors, self.index_.d)
        if len(vectors):
            self.index_.add(vectors)
            self.keys_.extend(keys)
        return self

    def needs_rebuild(self) -> bool:
        """True when the index no longer suits its size: an exact index past ``exact_up_to``, or an
        IVF index grown to ``REBUILD_GROWTH`` times the rows its lists were trained for."""
        n = len(self.keys_)
        if self.kind_ == "exact":
            return n > self.exact_up_to
        return n > REBUILD_GROWTH * self.built_rows_

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """(similarities (m, k'), keys per query), best first, k' = min(k, rows)."""
        if k < 1:
            raise ConfigError(f"k must be at least 1; got {k}.")
        k = min(k, len(self.keys_))
        queries = _as_rows(queries, self.index_.d)
        if k == 0:
            return np.zeros((len(queries), 0), dtype=np.float32), [[] for _ in queries]
        scores, rows = self.index_.search(queries, k)
        keys = [[self.keys_[r] for r in row if r >= 0] for row in rows]
        return scores[:, :max((len(k_) for k_ in keys), default=0)], keys

    def describe(self) -> dict[str, Any]:
        """The index's kind and parameters, as recorded beside it."""
        return {"kind": self.kind_, "rows": len(self.keys_), "built_rows": self.built_rows_,
                "dim": int(self.index_.d), "nlist": self.nlist_, "nprobe": self.nprobe_,
                "exact_up_to": self.exact_up_to, "build_seconds": round(self.build_seconds_, 3)}

    # -- persistence: the faiss bytes, the row keys and the parameters; no pickle -------------------

    def state(self) -> tuple[bytes, list[str], dict[str, Any]]:
        return index_to_bytes(self.index_), list(self.keys_), self.describe()

    @classmethod
    def from_state(cls, index: bytes, keys: Sequence[str], params: dict[str, Any]) -> "VectorIndex":
        loaded = cls(exact_up_to=int(params["exact_up_to"]), nprobe=params.get("nprobe") or None)
        loaded.index_ = index_from_bytes(index)
        loaded.kind_, loaded.nlist_, loaded.nprobe_ = params["kind"], int(params["nlist"]), int(params["nprobe"])
        if loaded.kind_ != "exact":
            loaded.index_.nprobe = loaded.nprobe_
        loaded.keys_ = list(keys)
        loaded.built_rows_ = int(params["built_rows"])
        loaded.build_seconds_ = float(params.get("build_seconds", 0.0))
        if loaded.index_.ntotal != len(loaded.keys_):
            raise ValueError(f"index holds {loaded.index_.ntotal} rows for {len(loaded.keys_)} keys")
        return loaded


def exact_similarities(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarities (m, n) of L2-normalised ``queries`` (m, d) and ``vectors`` (n, d)."""
    return _as_rows(queries) @ _as_rows(vectors).T


def _as_rows(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if dim is not None and vectors.shape[1] != dim:
        raise ConfigError(f"These vectors have {vectors.shape[1]} dimensions but the index has {dim}; "
                          "they come from another model.")
    return vectors
