"""Cluster colours shared by the report and the web app: one Glasbey-style palette, so cluster 7 has
the same colour in both, and colours that follow each other differ as much as possible.

The palette is made, not hand-picked: greedy farthest-point sampling in CIELAB (Glasbey et al., 2007)
over a fixed grid of sRGB candidates, starting from a fixed colour. It is deterministic, and each
palette is a prefix of every longer one, so a cluster's colour never depends on how many clusters
the run has.
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
    """``{cluster: colour}`` for the given cluster ids."""
    return {int(c): cluster_colour(int(c)) for c in clusters}
