"""Duplicates: byte-identical files, copies that keep the picture (resized, re-encoded, recoloured,
mirrored, cropped) and near-duplicates in embedding space, joined into groups with one suggested
keeper each. Nothing is ever deleted.

Four detectors each link pairs of images; a group is a connected set of links:

- exact: the same content hash (the catalogue's BLAKE2b of the bytes).
- perceptual: a 64-bit DCT hash of the picture (``imagehash.phash``: 32x32 grey, the signs of
  the lowest 8x8 frequencies against their median) that differs in at most ``hamming`` bits from
  the other's hash or from the hash of its mirror image, so a mirrored copy is as near as the
  original (0-2 bits). Resizing, recompression and small colour changes move a few bits; unrelated
  pictures ~32.
- crops: the hash of an image (or of its mirror) within ``crop_hamming`` bits of the hash of one of
  nine overlapping 90% crops of the other (a 3x3 grid of positions): a copy that keeps 90% of the
  picture is then within ~10 bits of the nearest crop, where the whole-picture hashes differ by
  16-30. So loose a match also finds look-alikes, so each candidate is verified geometrically
  (``imgcluster.geometry``: local features and RANSAC, with OpenCV) and linked only when one
  transform maps one picture onto the other; without OpenCV the crops detector links nothing.
- embedding: cosine similarity of the model's vectors of at least ``similarity``; catches edits
  that change the pixels too much for a hash. With a verifier, a pair whose local features refute
  it (plenty of features, no transform) is not linked: two halves of one texture photo embed as
  alike as a copy. Pictures too smooth to verify are linked on the similarity alone.

Candidates come only from these fast detectors (hash range searches, the vector index), and only
pairs not already in one group are verified, so the cost grows near-linearly with the collection.

The keeper is the member with the most pixels, then the one catalogued first. Each other member
says how it relates to the keeper: ``exact``, ``perceptual``, ``crops`` (a verified crops link to
the keeper), ``embedding`` (the first detector that links it to the keeper directly), or ``chained``
(linked to the keeper only through another member). ``links_`` holds every link made, each with
the detector that found it and its evidence (Hamming distance, similarity, matched key-points and
the estimated transform).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .config import DETECTORS
from .geometry import Match
from .neighbours import binary_index, exact_index, ivf_index

# The stored hash set of one image: the picture, its mirror, then nine 90% crops (3x3 positions);
# 11 x 64 bits as 176 hex digits. A new name, so hashes stored by earlier versions are not misread.
PERCEPTUAL_ALGORITHM = "phash-64-mirror-crops9"
N_HASHES = 11
CROP_SIDE = 0.9
CROP_POSITIONS = (0.0, 0.5, 1.0)
# Exhaustive similarity search up to this many images (20k x 20k x 1280-d: ~10 s on 2 cores);
# beyond, an IVF index whose lists near-duplicates share (they are far closer than any list edge).
EXACT_PAIRS_UP_TO = 20_000
# Hash range searches are exhaustive up to this many hashes (the perceptual search of 100k images:
# 48 s on 2 busy cores); beyond, a binary IVF index probing this many lists (bench/dedup.py --scale).
EXACT_HASHES_UP_TO = 50_000
HASH_LISTS_PROBED = 32  # at 100k: 478 of 478 copies within 5 bits found (16 lists: 476), 7 s instead of 48
# Crops candidates kept per image, nearest first, so verification stays linear in the collection:
# at 12 bits unrelated photos collide now and then (on the benchmark's photos 0.2% of pairs), which
# at 100k images would be millions of pairs; a copy is nearly always among its image's 4 nearest.
CANDIDATES_PER_IMAGE = 4
KEEPER, CHAINED = "keeper", "chained"

# What ``verify(row, row)`` answers: a Match (one transform maps one picture onto the other), None
# (checked: they do not) or UNVERIFIABLE (too few local features to tell, e.g. a smooth gradient).
UNVERIFIABLE = "unverifiable"
Verify = Callable[[int, int], "Match | str | None"]


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash of an image, as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image, hash_size=8))


def perceptual_hashes(image: Image.Image) -> str:
    """The hash set the perceptual and crops detectors compare: the image's 64-bit DCT hash, its
    mirror's, and those of nine overlapping 90% crops; 176 hex digits (``PERCEPTUAL_ALGORITHM``)."""
    width, height = image.size
    crop_w, crop_h = width * CROP_SIDE, height * CROP_SIDE
    views = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    for y in CROP_POSITIONS:
        for x in CROP_POSITIONS:
            left, top = x * (width - crop_w), y * (height - crop_h)
            views.append(image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h))))
    return "".join(perceptual_hash(view) for view in views)


@dataclass(frozen=True)
class Link:
    """Two rows (``first`` < ``second``) joined by ``detector``, with its evidence: ``hamming`` (bits,
    -1 unknown), ``similarity`` (cosine, nan unknown) and ``match`` (the geometric verification)."""

    first: int
    second: int
    detector: str
    hamming: int = -1
    similarity: float = float("nan")
    match: Match | None = None


class DuplicateFinder:
    """Groups of duplicates among n images. ``fit`` takes per-image arrays: content hashes (n,),
    hash sets (n,) hex from ``perceptual_hashes`` (None where the image could not be hashed),
    L2-normalised vectors (n, d), pixel counts (n,) and the order in which they were first seen
    (n,); a detector whose input is None is left out. ``verify(row, row)`` checks a pair
    geometrically (a ``Match``, None when refuted, or UNVERIFIABLE): a crops candidate is linked only
    on a Match (without ``verify`` crops candidates are counted, not linked), an embedding pair
    unless refuted.
    ``progress(done, total)`` follows the crops candidates.

    After ``fit``: ``group_`` (n,) group id or -1 (no duplicate), ``keeper_`` (n,) bool, ``how_`` (n,)
    relation to the group's keeper (see the module doc; "" outside groups), ``hamming_`` (n,) bits
    from the keeper's perceptual hash, mirror-invariant (-1 unknown), ``similarity_`` (n,) cosine to
    the keeper (nan unknown), ``pairs_`` every Link made, ``link_`` (n,) the index in ``pairs_`` of
    the link that put each member in its group (its link to the keeper where there is one; -1 for
    keepers and outside groups), ``links_`` links per detector, ``candidates_`` the crops
    candidates found, verified and left unverified, and ``verified_`` whether pairs were verified.
    """

    def __init__(self, detectors: Sequence[str] = DETECTORS, hamming: int = 5, similarity: float = 0.96,
                 crop_hamming: int = 12, seed: int = 0):
        self.detectors, self.hamming, self.similarity = tuple(detectors), hamming, similarity
        self.crop_hamming, self.seed = crop_hamming, seed

    def fit(self, content_hashes: Sequence[str], perceptual: Sequence[str | None] | None = None,
            vectors: np.ndarray | None = None, pixels: np.ndarray | None = None,
            seen: np.ndarray | None = None, verify: Verify | None = None,
            progress: Callable[[int, int], None] | None = None) -> "DuplicateFinder":
        n = len(content_hashes)
        pixels = np.zeros(n) if pixels is None else np.asarray(pixels, dtype=np.float64)
        seen = np.arange(n) if seen is None else np.asarray(seen)
        known = np.zeros(n, dtype=bool) if perceptual is None else np.asarray([bool(p) for p in perceptual])
        bits = None if perceptual is None else hash_sets(perceptual)
        links: list[Link] = []
        if "exact" in self.detectors:
            links += [Link(a, b, "exact") for a, b in exact_pairs(content_hashes).tolist()]
        rows = np.flatnonzero(known)  # an image that could not be hashed links by the other detectors
        if "perceptual" in self.detectors and bits is not None:
            pairs, distances = cross_hamming_pairs(bits[rows, :2], bits[rows, :1], self.hamming, self.seed)
            links += [Link(int(rows[a]), int(rows[b]), "perceptual", int(d))
                      for (a, b), d in zip(pairs.tolist(), distances.tolist())]
        self.candidates_ = {"crops": 0, "verified": 0, "unverified": 0}
        self.verified_ = verify is not None
        if "crops" in self.detectors and bits is not None:
            links += self._verified_crops(n, links, bits, rows, verify, progress)
        pairs = np.asarray([(link.first, link.second) for link in links], dtype=np.int64).reshape(-1, 2)
        groups = connected_groups(n, pairs)
        priority = np.lexsort((seen, -pixels))  # largest first, then first seen
        if "embedding" in self.detectors and vectors is not None and len(vectors):
            groups, joined = self._join_by_embedding(groups, priority, vectors, verify)
            links += joined
        self.pairs_ = links
        self.links_ = {name: sum(link.detector == name for link in links) for name in self.detectors}
        self.group_ = groups
        self._describe_members(content_hashes, bits, known, vectors, priority)
        return self

    def _verified_crops(self, n: int, links: list[Link], bits: np.ndarray, rows: np.ndarray,
                        verify: Verify | None, progress: Callable[[int, int], None] | None) -> list[Link]:
        """Crops links: candidates (an image's or its mirror's hash near one of the other's crop
        hashes), each image's ``CANDIDATES_PER_IMAGE`` nearest, verified unless both rows are
        already in one group."""
        pairs, distances = cross_hamming_pairs(bits[rows, :2], bits[rows], self.crop_hamming, self.seed)
        keep = nearest_per_row(pairs, distances, CANDIDATES_PER_IMAGE)
        pairs, distances = rows[pairs[keep]], distances[keep]
        self.candidates_["crops"] = len(pairs)
        parent = np.arange(n)
        for link in links:
            _union(parent, link.first, link.second)
        found = []
        # by first row, nearest first: the row's features serve all its candidates (the verifier
        # keeps the latest), and a copy linked early spares checking its look-alikes
        order = np.lexsort((distances, pairs[:, 0]))
        if progress is not None:
            progress(0, len(pairs))
        for done, ((a, b), distance) in enumerate(zip(pairs[order].tolist(), distances[order].tolist()), 1):
            if progress is not None and (done % 64 == 0 or done == len(pairs)):
                progress(done, len(pairs))
            if _root(parent, a) == _root(parent, b):
                continue
            if verify is None:
                self.candidates_["unverified"] += 1
                continue
            match = verify(a, b)
            self.candidates_["verified"] += 1
            if isinstance(match, Match):  # a hash this loose alone is no evidence: unverifiable is no link
                found.append(Link(a, b, "crops", int(distance), match=match))
                _union(parent, a, b)
        return found

    def _describe_members(self, content_hashes: Sequence[str], bits: np.ndarray | None, known: np.ndarray,
                          vectors: np.ndarray | None, priority: np.ndarray) -> None:
        """Fill keeper_, how_, hamming_, similarity_ and link_ from group_ and pairs_."""
        n = len(self.group_)
        self.keeper_ = np.zeros(n, dtype=bool)
        self.how_ = np.full(n, "", dtype=object)
        self.hamming_ = np.full(n, -1, dtype=np.int64)
        self.similarity_ = np.full(n, np.nan)
        self.link_ = np.full(n, -1, dtype=np.int64)
        rank = np.empty(n, dtype=np.int64)
        rank[priority] = np.arange(n)
        touching: dict[int, list[int]] = {}
        for index, link in enumerate(self.pairs_):
            touching.setdefault(link.first, []).append(index)
            touching.setdefault(link.second, []).append(index)
        for members in group_members(self.group_):
            keeper = members[np.argmin(rank[members])]
            self.keeper_[keeper] = True
            self.how_[keeper] = KEEPER
            if bits is not None:
                direct = np.unpackbits(bits[members, :2] ^ bits[keeper, 0], axis=2).sum(axis=2).min(axis=1)
                self.hamming_[members] = np.where(known[members] & known[keeper], direct, -1)
            if vectors is not None and len(vectors):
                self.similarity_[members] = np.asarray(vectors[members], dtype=np.float32) @ vectors[keeper]
            for row in members[members != keeper].tolist():
                mine = touching.get(row, [])
                to_keeper = [i for i in mine if keeper in (self.pairs_[i].first, self.pairs_[i].second)]
                self.link_[row] = (to_keeper or mine or [-1])[0]
                crops = any(self.pairs_[i].detector == "crops" for i in to_keeper)
                self.how_[row] = self._relation(content_hashes[row] == content_hashes[keeper],
                                                int(self.hamming_[row]), crops, float(self.similarity_[row]))


    def _join_by_embedding(self, groups: np.ndarray, priority: np.ndarray, vectors: np.ndarray,
                           verify: Verify | None) -> tuple[np.ndarray, list[Link]]:
        """Join the groups made so far (and single images) by their keepers' embeddings, as stars,
        not chains: keepers in priority order become leaders unless an earlier leader is at least
        ``similarity`` like them (and, with ``verify``, not refuted geometrically: a texture's two
        halves embed alike but do not map onto each other); every other keeper joins the most alike
        such leader. So each group's images are all near its keeper, and two different pictures are
        not joined through a series of small steps. Returns the new group ids and the links made."""
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
        joined: list[Link] = []
        for position in range(len(keepers)):
            leaders = [a for a in linked.get(position, []) if leader_of[a] == a]
            scores = vectors[keepers[leaders]] @ vectors[keepers[position]] if leaders else np.zeros(0)
            for best in np.argsort(-scores, kind="stable").tolist():
                a, b = sorted((int(keepers[leaders[best]]), int(keepers[position])))
                match = verify(a, b) if verify is not None else UNVERIFIABLE
                if match is None:  # features say these are different pictures
                    continue
                leader_of[position] = leaders[best]
                joined.append(Link(a, b, "embedding", similarity=float(scores[best]),
                                   match=match if isinstance(match, Match) else None))
                break
        pairs = np.stack([keepers[leader_of], keepers], axis=1)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        within = np.flatnonzero(groups >= 0)
        same_group = np.stack([keepers_of(groups, keepers)[within], within], axis=1)
        return connected_groups(n, np.concatenate([same_group, pairs])), joined

    def _relation(self, same_bytes: bool, hamming: int, crops: bool, similarity: float) -> str:
        if "exact" in self.detectors and same_bytes:
            return "exact"
        if "perceptual" in self.detectors and 0 <= hamming <= self.hamming:
            return "perceptual"
        if crops:
            return "crops"
        if "embedding" in self.detectors and similarity >= self.similarity:
            return "embedding"
        return CHAINED

    def describe(self) -> dict[str, Any]:
        n_groups = int(self.group_.max()) + 1 if len(self.group_) else 0
        return {"detectors": list(self.detectors), "hamming": self.hamming, "similarity": self.similarity,
                "crop_hamming": self.crop_hamming, "groups": n_groups,
                "duplicates": int(((self.group_ >= 0) & ~self.keeper_).sum()), "links": dict(self.links_),
                "candidates": dict(self.candidates_)}


def keepers_of(groups: np.ndarray, keepers: np.ndarray) -> np.ndarray:
    """For each row, the row of ``keepers`` in its group (itself when in no group)."""
    result = np.arange(len(groups))
    by_group = {int(groups[k]): int(k) for k in keepers if groups[k] >= 0}
    for row in np.flatnonzero(groups >= 0):
        result[row] = by_group[int(groups[row])]
    return result


def hash_sets(hexes: Sequence[str | None]) -> np.ndarray:
    """Hash sets (n,) of ``perceptual_hashes`` → uint8 bytes (n, 11, 8) for Hamming distances; zeros
    where None."""
    blank = "0" * (16 * N_HASHES)
    joined = "".join(h if h and len(h) == len(blank) else blank for h in hexes)
    return np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(len(hexes), N_HASHES, 8).copy()


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


def cross_hamming_pairs(queries: np.ndarray, index: np.ndarray, max_distance: int,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(m, 2) row pairs (i < j) where one of a row's ``queries`` (n, q, 8) hashes is within
    ``max_distance`` bits of one of the other row's ``index`` (n, k, 8) hashes, either way round,
    and (m,) the least such distance. Up to ``EXACT_HASHES_UP_TO`` index hashes an exhaustive
    binary range search (faiss); beyond, a binary IVF index (√(n·k) lists, ``HASH_LISTS_PROBED``
    probed), so the cost grows ~n^1.5, not n², and a few near pairs may be missed."""
    n, q, k = len(queries), queries.shape[1], index.shape[1]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    entries = np.ascontiguousarray(index.reshape(n * k, 8))
    search = binary_index(entries, EXACT_HASHES_UP_TO, HASH_LISTS_PROBED, seed)
    search.add(entries)
    flat = np.ascontiguousarray(queries.reshape(n * q, 8))
    pairs, distances = [], []
    for start in range(0, len(flat), 8192):
        lims, found_distances, found = search.range_search(flat[start:start + 8192], max_distance + 1)
        rows = (start + np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))) // q
        others = found.astype(np.int64) // k
        keep = rows != others
        pairs.append(np.sort(np.stack([rows[keep], others[keep]], axis=1), axis=1))
        distances.append(found_distances[keep].astype(np.int64))
    pairs, distances = np.concatenate(pairs), np.concatenate(distances)
    order = np.lexsort((distances, pairs[:, 1], pairs[:, 0]))  # per pair, its least distance first
    pairs, distances = pairs[order], distances[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    return pairs[first], distances[first]


def nearest_per_row(pairs: np.ndarray, distances: np.ndarray, k: int) -> np.ndarray:
    """Mask (m,) of the ``pairs`` (m, 2) among the ``k`` nearest of either of their rows."""
    keep = np.zeros(len(pairs), dtype=bool)
    for column in (0, 1):
        order = np.lexsort((distances, pairs[:, column]))
        rows = pairs[order, column]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        keep[order[rank < k]] = True
    return keep


def similar_pairs(vectors: np.ndarray, min_similarity: float, seed: int = 0) -> np.ndarray:
    """(m, 2) row pairs of L2-normalised ``vectors`` with cosine similarity ≥ ``min_similarity`` (i < j)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if n <= EXACT_PAIRS_UP_TO:
        index = exact_index(d)
    else:
        index = ivf_index(vectors, int(2 * np.sqrt(n)), nprobe=8, seed=seed)
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


def _root(parent: np.ndarray, row: int) -> int:
    while parent[row] != row:
        parent[row] = parent[parent[row]]  # path halving keeps later look-ups short
        row = int(parent[row])
    return row


def _union(parent: np.ndarray, a: int, b: int) -> None:
    parent[_root(parent, a)] = _root(parent, b)
