"""Cluster colours shared by the report and the web app: one Glasbey-style palette, and one choice of
colour per cluster made from the run's 2-D map, so cluster 7 has the same colour in both and clusters
that touch on the map look different at any k.

The palette is made, not hand-picked: greedy farthest-point sampling in CIELAB (Glasbey et al., 2007)
over a fixed grid of sRGB candidates, starting from a fixed colour. It is deterministic, and each
palette is a prefix of every longer one.

``map_colours`` gives each cluster a palette colour: its own (``cluster_colour``, by id) unless a
cluster next to it on the map already looks too alike, then the free colour that stands out most
from its neighbours (greedy colouring of the map's adjacency graph, biggest clusters first). Only the
map and the assignments go in, so the report and the app, which call it on the same run, agree.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NOISE_COLOUR = "#a9aeb6"  # unclustered images (-1): a grey no palette colour comes near (chroma >= 25)
MAX_COLOURS = 256         # distinct colours; beyond this the palette repeats (clusters 256 apart)
# Lightness bounds keep every colour visible on the white page and distinct from black ink; the
# chroma floor keeps colours away from the unclustered grey.
_LIGHTNESS = (30.0, 85.0)
_MIN_CHROMA = 25.0
_LEVELS = 18              # candidates per sRGB channel: 5,832 colours, ~0.1 s for 256 picks
_FIRST = (31, 119, 180)   # a mid blue, as most plotting palettes start


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours (n, 3) in 0..255."""
    c = rgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


@lru_cache(maxsize=1)
def _glasbey() -> tuple[str, ...]:
    levels = np.linspace(0, 255, _LEVELS).round()
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(rgb)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    keep = (lab[:, 0] >= _LIGHTNESS[0]) & (lab[:, 0] <= _LIGHTNESS[1]) & (chroma >= _MIN_CHROMA)
    rgb, lab = rgb[keep], lab[keep]
    first = srgb_to_lab(np.array([_FIRST], dtype=float))[0]
    chosen = [int(np.argmin(((lab - first) ** 2).sum(axis=1)))]
    nearest = ((lab - lab[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < MAX_COLOURS:
        pick = int(np.argmax(nearest))  # ties resolve to the lowest index: deterministic
        chosen.append(pick)
        nearest = np.minimum(nearest, ((lab - lab[pick]) ** 2).sum(axis=1))
    return tuple("#" + "".join(f"{int(v):02x}" for v in rgb[i]) for i in chosen)


def palette(n: int = MAX_COLOURS) -> list[str]:
    """The first ``n`` palette colours as ``#rrggbb`` (at most MAX_COLOURS distinct, then repeating)."""
    if n < 0:
        raise ValueError(f"n must be 0 or more; got {n}.")
    colours = _glasbey()
    return [colours[i % len(colours)] for i in range(n)]


def cluster_colour(cluster: int) -> str:
    """The colour of a cluster id everywhere imgcluster draws it; unclustered (-1) is grey."""
    if cluster < 0:
        return NOISE_COLOUR
    colours = _glasbey()
    return colours[cluster % len(colours)]


def cluster_colours(clusters: list[int]) -> dict[int, str]:
    """``{cluster: colour}`` for the given cluster ids, by id alone (``map_colours`` also looks at the map)."""
    return {int(c): cluster_colour(int(c)) for c in clusters}


# Two clusters touch when their points fall within REACH cells of each other on a GRID x GRID raster of
# the map (square cells; about 2% of the map's width at REACH 2 of 128): what reads as "next to" at the
# whole map's zoom. Zoomed in, neighbours are far apart on screen and matter less.
GRID, REACH = 128, 2
# Colours at least this far apart in CIELAB (~2.3 is just noticeable) count as plainly different: among
# those, a cluster keeps its own colour, else takes one no other cluster has.
DISTINCT = 30.0


def map_adjacency(x: np.ndarray, y: np.ndarray, clusters: np.ndarray, grid: int = GRID,
                  reach: int = REACH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which clusters touch on the 2-D map: (ids (k,) sorted, sizes (k,), pairs (m, 2) of indexes into
    ids, each pair once, lower first). Unclustered points (< 0) take no part.

    Each raster cell is won by its most common cluster (ties: the lower id); clusters whose cells lie
    within ``reach`` cells touch, as do clusters that share a cell. Independent of the points' order."""
    clusters = np.asarray(clusters, dtype=np.int64)
    keep = clusters >= 0
    kept = clusters[keep]
    if len(kept) and kept.max() < 4 * len(kept) + 1024:  # the usual small ids: counted, not sorted (1M points)
        counts = np.bincount(kept)
        ids = np.flatnonzero(counts)
        sizes = counts[ids]
        rank = np.cumsum(counts > 0)[kept] - 1
    else:
        ids, rank, sizes = np.unique(kept, return_inverse=True, return_counts=True)
    if len(ids) < 2:
        return ids, sizes, np.zeros((0, 2), dtype=np.int64)
    xs, ys = np.asarray(x, dtype=np.float64)[keep], np.asarray(y, dtype=np.float64)[keep]
    low_x, low_y = float(xs.min()), float(ys.min())
    span = max(float(xs.max()) - low_x, float(ys.max()) - low_y, 1e-12)  # square cells, as the map is drawn

    def cell(v: np.ndarray, low: float) -> np.ndarray:
        return np.clip(np.floor((v - low) / span * grid), 0, grid - 1).astype(np.int64)

    k = len(ids)
    codes = (cell(ys, low_y) * grid + cell(xs, low_x)) * k + rank.reshape(-1)
    if grid * grid * k <= 1 << 22:  # counted in place: sorting 1M codes took most of the time
        tally = np.bincount(codes, minlength=grid * grid * k)
        present = np.flatnonzero(tally)
        counts = tally[present]
    else:
        present, counts = np.unique(codes, return_counts=True)
    cells, members = present // k, present % k
    first = np.lexsort((members, -counts, cells))  # per cell: most points, then lowest id
    leaders = first[np.r_[True, cells[first][1:] != cells[first][:-1]]]
    owner = np.full(grid * grid, -1, dtype=np.int64)
    owner[cells[leaders]] = members[leaders]
    found = [np.stack([members, owner[cells]], axis=1)]  # sharing a cell with its winner
    raster = owner.reshape(grid, grid)
    padded = np.pad(raster, reach, constant_values=-1)
    for dy in range(0, reach + 1):
        for dx in range(-reach, reach + 1):
            if dy or dx > 0:  # half the window: the other half gives the same pairs reversed
                shifted = padded[reach + dy:reach + dy + grid, reach + dx:reach + dx + grid]
                found.append(np.stack([raster.reshape(-1), shifted.reshape(-1)], axis=1))
    pairs = np.concatenate(found)
    pairs = pairs[(pairs[:, 0] >= 0) & (pairs[:, 1] >= 0) & (pairs[:, 0] != pairs[:, 1])]
    codes = np.unique(pairs.min(axis=1) * k + pairs.max(axis=1))  # 1-D: np.unique(axis=0) is several times slower
    return ids, sizes, np.stack([codes // k, codes % k], axis=1)


def map_colours(x: np.ndarray, y: np.ndarray, clusters: np.ndarray) -> dict[int, str]:
    """``{cluster: colour}`` for every cluster of a run (not -1), from its map positions ``x``, ``y``
    and ``clusters`` (n each): clusters that touch on the map differ by at least DISTINCT in CIELAB
    where the palette allows (see the module docstring). Deterministic; the points' order is irrelevant."""
    ids, sizes, pairs = map_adjacency(x, y, clusters)
    if not len(ids):
        return {}
    colours = _glasbey()
    lab = srgb_to_lab(np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=float))
    gaps = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))  # (256, 256)
    neighbours: list[list[int]] = [[] for _ in ids]
    for a, b in pairs.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    own = ids % len(colours)
    owned = np.zeros(len(colours), dtype=np.int64)
    np.add.at(owned, own, 1)  # a colour that is another cluster's own is taken last
    used = np.zeros(len(colours), dtype=np.int64)
    chosen = np.full(len(ids), -1, dtype=np.int64)
    index = np.arange(len(colours))
    for c in np.lexsort((ids, -sizes)).tolist():  # biggest first: they keep their own colours
        near = [chosen[n] for n in neighbours[c] if chosen[n] >= 0]
        apart = np.minimum(gaps[:, near].min(axis=1) if near else np.full(len(colours), np.inf), DISTINCT)
        is_own = index == own[c]
        # Plainly different first; then the least used; its own colour; nobody's own; the palette's order.
        best = np.lexsort((index, owned - is_own, ~is_own, used, -apart))[0]
        chosen[c] = best
        used[best] += 1
    return {int(cluster): colours[int(pick)] for cluster, pick in zip(ids.tolist(), chosen.tolist())}
