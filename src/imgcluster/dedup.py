"""Duplicates: byte-identical files, near-exact copies (perceptual hash) and near-duplicates in
embedding space, joined into groups with one suggested keeper each. Nothing is ever deleted.

Three detectors each link pairs of images; a group is a connected set of links:

- exact: the same content hash (the catalogue's BLAKE2b of the bytes).
- perceptual: a 64-bit DCT hash of the picture (``imagehash.phash``: 32x32 grey, the signs of
  the lowest 8x8 frequencies against their median) that differs in at most ``hamming`` bits.
  Resizing, recompression and small colour changes move a few bits; unrelated pictures ~32.
- embedding: cosine similarity of the model's vectors of at least ``similarity``; catches crops,
  flips and edits that change the pixels too much for a perceptual hash.

The keeper is the member with the most pixels, then the one catalogued first. Each other member
says how it relates to the keeper: ``exact``, ``perceptual``, ``embedding`` (the first detector that
links it to the keeper directly, with the Hamming distance and the similarity to the keeper), or
``chained`` (linked to the keeper only through another member).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from .config import DETECTORS

PERCEPTUAL_ALGORITHM = "phash-64"
# Exhaustive similarity search up to this many images (20k x 20k x 1280-d: ~10 s on 2 cores);
# beyond, an IVF index whose lists near-duplicates share (they are far closer than any list edge).
EXACT_PAIRS_UP_TO = 20_000
KEEPER, CHAINED = "keeper", "chained"


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash of an image, as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image, hash_size=8))


class DuplicateFinder:
    """Groups of duplicates among n images. ``fit`` takes per-image arrays: content hashes (n,),
    perceptual hashes (n,) hex (None where the image could not be hashed), L2-normalised vectors
    (n, d), pixel counts (n,) and the order in which they were first seen (n,); a detector whose
    input is None is left out.

    After ``fit``: ``group_`` (n,) group id or -1 (no duplicate), ``keeper_`` (n,) bool, ``how_`` (n,)
    relation to the group's keeper (see the module doc; "" outside groups), ``hamming_`` (n,) bits
    from the keeper's perceptual hash (-1 unknown) and ``similarity_`` (n,) cosine to the keeper
    (nan unknown).
    """

    def __init__(self, detectors: Sequence[str] = DETECTORS, hamming: int = 8, similarity: float = 0.9,
                 seed: int = 0):
        self.detectors, self.hamming, self.similarity, self.seed = tuple(detectors), hamming, similarity, seed

    def fit(self, content_hashes: Sequence[str], perceptual: Sequence[str] | None = None,
            vectors: np.ndarray | None = None, pixels: np.ndarray | None = None,
            seen: np.ndarray | None = None) -> "DuplicateFinder":
        n = len(content_hashes)
        pixels = np.zeros(n) if pixels is None else np.asarray(pixels, dtype=np.float64)
        seen = np.arange(n) if seen is None else np.asarray(seen)
        known = np.zeros(n, dtype=bool) if perceptual is None else np.asarray([bool(p) for p in perceptual])
        bits = None if perceptual is None else hash_bits([p or "0" * 16 for p in perceptual])
        links: dict[str, np.ndarray] = {}
        if "exact" in self.detectors:
            links["exact"] = exact_pairs(content_hashes)
        if "perceptual" in self.detectors and bits is not None:
            rows = np.flatnonzero(known)  # an image that could not be hashed links by the other detectors
            links["perceptual"] = rows[hamming_pairs(bits[rows], self.hamming)]
        groups = connected_groups(n, np.concatenate(list(links.values())) if links
                                  else np.zeros((0, 2), dtype=np.int64))
        priority = np.lexsort((seen, -pixels))  # largest first, then first seen
        if "embedding" in self.detectors and vectors is not None and len(vectors):
            groups, links["embedding"] = self._join_by_embedding(groups, priority, vectors)
        self.links_ = {name: len(pairs) for name, pairs in links.items()}
        self.group_ = groups
        self.keeper_ = np.zeros(n, dtype=bool)
        self.how_ = np.full(n, "", dtype=object)
        self.hamming_ = np.full(n, -1, dtype=np.int64)
        self.similarity_ = np.full(n, np.nan)
        rank = np.empty(n, dtype=np.int64)
        rank[priority] = np.arange(n)
        for members in group_members(groups):
            keeper = members[np.argmin(rank[members])]
            self.keeper_[keeper] = True
            self.how_[keeper] = KEEPER
            if bits is not None:
                distance = np.unpackbits(bits[members] ^ bits[keeper], axis=1).sum(axis=1)
                self.hamming_[members] = np.where(known[members] & known[keeper], distance, -1)
            if vectors is not None and len(vectors):
                self.similarity_[members] = np.asarray(vectors[members], dtype=np.float32) @ vectors[keeper]
            for row in members[members != keeper]:
                self.how_[row] = self._relation(content_hashes[row] == content_hashes[keeper],
                                                int(self.hamming_[row]), float(self.similarity_[row]))
        return self

    def _join_by_embedding(self, groups: np.ndarray, priority: np.ndarray,
                           vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Join the exact/perceptual groups (and single images) by their keepers' embeddings, as
        stars, not chains: keepers in priority order become leaders unless one earlier leader is at
        least ``similarity`` like them; every other keeper joins the leader most like it. So each
        group's images are all near its keeper, and two different pictures are not joined through a
        series of small steps. Returns the new group ids and the (keeper, leader) links made."""
        n = len(groups)
        first_of = {}
        for row in priority:  # each group's keeper (its first row in priority order), and the singles
            first_of.setdefault(int(groups[row]) if groups[row] >= 0 else -1 - int(row), int(row))
        keepers = np.asarray(list(first_of.values()), dtype=np.int64)  # in priority order
        pairs = similar_pairs(vectors[keepers], self.similarity, self.seed)
        linked: dict[int, list[int]] = {}
        for a, b in pairs.tolist():  # a < b: a comes first in priority order
            linked.setdefault(b, []).append(a)
        leader_of = np.arange(len(keepers))
        for position in range(len(keepers)):
            leaders = [a for a in linked.get(position, []) if leader_of[a] == a]
            if leaders:
                scores = vectors[keepers[leaders]] @ vectors[keepers[position]]
                leader_of[position] = leaders[int(np.argmax(scores))]
        joined = np.stack([keepers[leader_of], keepers], axis=1)
        joined = joined[joined[:, 0] != joined[:, 1]]
        within = np.flatnonzero(groups >= 0)
        same_group = np.stack([keepers_of(groups, keepers)[within], within], axis=1)
        return connected_groups(n, np.concatenate([same_group, joined])), joined

    def _relation(self, same_bytes: bool, hamming: int, similarity: float) -> str:
        if "exact" in self.detectors and same_bytes:
            return "exact"
        if "perceptual" in self.detectors and 0 <= hamming <= self.hamming:
            return "perceptual"
        if "embedding" in self.detectors and similarity >= self.similarity:
            return "embedding"
        return CHAINED

    def describe(self) -> dict[str, Any]:
        n_groups = int(self.group_.max()) + 1 if len(self.group_) else 0
        return {"detectors": list(self.detectors), "hamming": self.hamming, "similarity": self.similarity,
                "groups": n_groups, "duplicates": int(((self.group_ >= 0) & ~self.keeper_).sum()),
                "links": dict(self.links_)}


def keepers_of(groups: np.ndarray, keepers: np.ndarray) -> np.ndarray:
    """For each row, the row of ``keepers`` in its group (itself when in no group)."""
    result = np.arange(len(groups))
    by_group = {int(groups[k]): int(k) for k in keepers if groups[k] >= 0}
    for row in np.flatnonzero(groups >= 0):
        result[row] = by_group[int(groups[row])]
    return result


def hash_bits(hexes: Sequence[str]) -> np.ndarray:
    """Hex hashes (n,) → uint8 bytes (n, 8) for Hamming distances."""
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(len(hexes), -1) if hexes \
        else np.zeros((0, 8), dtype=np.uint8)


def exact_pairs(content_hashes: Sequence[str]) -> np.ndarray:
    """(m, 2) row pairs with equal content hash (each chained to the first of its hash)."""
    first: dict[str, int] = {}
    pairs = []
    for row, value in enumerate(content_hashes):
        if value in first:
            pairs.append((first[value], row))
        else:
            first[value] = row
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def hamming_pairs(bits: np.ndarray, max_distance: int) -> np.ndarray:
    """(m, 2) row pairs whose hashes differ in at most ``max_distance`` bits (i < j)."""
    import faiss

    n = len(bits)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    index = faiss.IndexBinaryFlat(bits.shape[1] * 8)
    index.add(np.ascontiguousarray(bits))
    found = []
    for start in range(0, n, 4096):
        lims, _, rows = index.range_search(np.ascontiguousarray(bits[start:start + 4096]), max_distance + 1)
        found.append(_pairs_from_ranges(start, lims, rows))
    return np.concatenate(found)


def similar_pairs(vectors: np.ndarray, min_similarity: float, seed: int = 0) -> np.ndarray:
    """(m, 2) row pairs of L2-normalised ``vectors`` with cosine similarity ≥ ``min_similarity`` (i < j)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if n <= EXACT_PAIRS_UP_TO:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(2 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(n, size=min(n, 40 * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = 8
    index.add(vectors)
    found = []
    for start in range(0, n, 2048):
        lims, _, rows = index.range_search(vectors[start:start + 2048], float(min_similarity))
        found.append(_pairs_from_ranges(start, lims, rows))
    return np.concatenate(found)


def _pairs_from_ranges(start: int, lims: np.ndarray, rows: np.ndarray) -> np.ndarray:
    queries = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
    pairs = np.stack([queries, rows.astype(np.int64)], axis=1)
    return pairs[pairs[:, 0] < pairs[:, 1]]


def connected_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Group id (n,) per row for the connected sets of ``pairs`` with two or more rows; -1 elsewhere.
    Groups are numbered by their first row."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    groups = np.full(n, -1, dtype=np.int64)
    in_group = sizes[labels] > 1
    _, first = np.unique(labels[in_group], return_index=True)
    order = {label: i for i, label in enumerate(labels[in_group][np.sort(first)])}
    groups[in_group] = [order[label] for label in labels[in_group]]
    return groups


def group_members(groups: np.ndarray) -> list[np.ndarray]:
    """Rows of each group id 0..g-1, in row order."""
    if not len(groups) or groups.max() < 0:
        return []
    order = np.argsort(groups, kind="stable")
    order = order[groups[order] >= 0]
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    return np.split(order, bounds)
