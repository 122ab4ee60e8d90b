"""How a cluster's pictures look (brightness, colourfulness, main colour), measured to tell apart
clusters that a namer would give the same name and that no class or node tells apart.

Read from the members the namer looks at (the view's sample by content hash, so the same members
give the same words whatever the seed), their stored thumbnails first: no file is opened when the
store has them. Words are relative to the clusters compared ("daisy · darker" and "daisy ·
brighter"), given only where the difference is one a person sees (``SCALES``), size last.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .base import ClusterView

log = logging.getLogger(__name__)

PIXELS = 48  # each picture is measured at this size: the words describe whole pictures, not detail
PICTURES = 16  # members measured per cluster


@dataclass(frozen=True)
class Looks:
    """A cluster's pictures on average: ``brightness`` (mean luma, 0 black to 1 white),
    ``colourfulness`` (Hasler and Süsstrunk's 2003 metric on 0-255 RGB: under 15 reads grey, over 60
    colourful), ``hue`` (the colour word of its saturated pixels, None when under a fifth are) and
    ``size`` (members)."""

    brightness: float
    colourfulness: float
    hue: str | None
    size: int


# (attribute, the gap between clusters from which a person sees it, words for two clusters, words for more)
# A mean luma 0.08 apart is two photos a person calls lighter and darker at a glance (20 of 255
# levels); Hasler and Süsstrunk's categories (not, slightly, moderately … colourful) are 15-25 apart.
SCALES = (("brightness", 0.08, ("darker", "brighter"), ("darkest", "brightest")),
          ("colourfulness", 15.0, ("greyer", "more colourful"), ("greyest", "most colourful")))
SIZE_RATIO = 1.25  # size tells clusters apart, as a last resort, from a quarter more members
# Hue bands in degrees (upper bounds), named as a person would: pinks and magentas read purplish.
HUES = ((15, "reddish"), (45, "orange"), (70, "yellowish"), (165, "greenish"), (255, "bluish"), (340, "purplish"),
        (360, "reddish"))
SATURATED = 0.2  # share of a picture's pixels that must be saturated (and not dark) for it to have a colour

# Two tones far apart: a silhouette, an ink drawing, a scan of text. Measured on the luma at
# ``TONE_PIXELS``, split in two at Otsu's threshold: the tones' means at least ``TWO_TONE_GAP`` apart
# (0 black, 1 white), at least ``TWO_TONE_TIGHT`` of the pixels within ``TONE_WIDTH`` of their tone's
# mean, and the rarer tone on at least ``TWO_TONE_RARER`` of them (a night sky with a few stars has
# one tone). On scikit-image's sample photos the horse silhouette's tones are 0.94 apart with 93% of
# pixels on them; every photograph's are at most 0.58 apart (the cameraman).
TONE_PIXELS = 64
TWO_TONE_GAP = 0.7
TWO_TONE_TIGHT = 0.85
TONE_WIDTH = 0.125
TWO_TONE_RARER = 0.05


def looks(view: ClusterView, count: int = PICTURES) -> Looks | None:
    """``view``'s looks from up to ``count`` members of its sample (its representatives where it has
    none); None when no picture could be read."""
    shown = view.sample if view.sample is not None and view.sample.paths else view
    pictures = []
    for i in range(min(count, len(shown.paths))):
        picture = _picture(shown, i)
        if picture is not None:
            pictures.append(picture)
    if not pictures:
        return None
    rgb = np.stack(pictures)  # (m, PIXELS, PIXELS, 3) floats 0-255
    return Looks(float(_luma(rgb).mean() / 255), float(np.mean([colourfulness(p) for p in rgb])),
                 main_hue(rgb), int(view.size))


def _picture(view: ClusterView, i: int) -> np.ndarray | None:
    thumbnail = view.thumbnails[i] if i < len(view.thumbnails) else None
    try:
        image = Image.open(io.BytesIO(thumbnail)) if thumbnail else view.image(i)
        return np.asarray(image.convert("RGB").resize((PIXELS, PIXELS)), dtype=np.float32)
    except Exception as error:  # one unreadable picture must not cost the others
        log.debug("cannot read %s for its looks: %s", view.paths[i], error)
        return None


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Süsstrunk's colourfulness of one (h, w, 3) 0-255 picture."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def main_hue(rgb: np.ndarray) -> str | None:
    """The colour word of the mean hue of the saturated pixels of (m, h, w, 3) pictures, None when
    fewer than ``SATURATED`` of the pixels are."""
    pixels = rgb.reshape(-1, 3) / 255
    high, low = pixels.max(axis=1), pixels.min(axis=1)
    chroma = high - low
    saturated = (chroma > 0.25) & (high > 0.25)
    if saturated.mean() < SATURATED:
        return None
    r, g, b = pixels[saturated].T
    c = chroma[saturated]
    # Hue as a point on the colour circle, averaged as vectors (red at 0 and 359 average to red).
    x = r - 0.5 * (g + b)
    y = np.sqrt(3) / 2 * (g - b)
    angle = float(np.degrees(np.arctan2((y / c).mean(), (x / c).mean())) % 360)
    return next(word for bound, word in HUES if angle < bound)


def two_tone(image: Image.Image) -> bool:
    """True when ``image`` is drawn in two tones far apart (see ``TWO_TONE_GAP``): a silhouette, a
    line drawing, a scan of text, whatever its colours."""
    luma = np.asarray(image.convert("L").resize((TONE_PIXELS, TONE_PIXELS)), dtype=np.float64).ravel() / 255
    threshold = _otsu(luma)
    dark, light = luma[luma <= threshold], luma[luma > threshold]
    if min(len(dark), len(light)) < TWO_TONE_RARER * len(luma):
        return False
    on_tone = np.sum(np.abs(dark - dark.mean()) < TONE_WIDTH) + np.sum(np.abs(light - light.mean()) < TONE_WIDTH)
    return bool(light.mean() - dark.mean() >= TWO_TONE_GAP and on_tone >= TWO_TONE_TIGHT * len(luma))


def _otsu(values: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of values in [0, 1]: the cut that best separates them into two groups."""
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1].astype(np.float64)
    above = len(values) - below
    sums = np.cumsum(counts * centres)[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = below * above * (sums / below - (sums[-1] + counts[-1] * centres[-1] - sums) / above) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return float(edges[1:-1][int(np.argmax(between))])


def telling_words(group: Sequence[Looks | None], fixed: Sequence[bool] = ()) -> list[str | None]:
    """Words telling apart clusters that would share a name, one per cluster or None: for each
    scale, the cluster most and least of it when it stands out from the next by ``SCALES``' gap
    (two clusters: "darker", "brighter"; more: "darkest", "brightest"), a main colour no other
    cluster of the group has ("reddish"), and size as a last resort. Scales that differ most are
    used first; a word is given once, and never to a cluster whose name is ``fixed`` (kept from an
    earlier run): it only takes part in the comparison. All None when a cluster has no looks."""
    fixed = list(fixed) or [False] * len(group)
    if len(group) < 2 or any(g is None for g in group):
        return [None] * len(group)
    known: list[Looks] = [g for g in group if g is not None]
    offers = []  # (tier, -strength, cluster, word)
    for attribute, gap, pair, ends in SCALES:
        values = np.asarray([getattr(g, attribute) for g in known])
        words = pair if len(known) == 2 else ends
        order = np.argsort(values, kind="stable")
        for end, word in ((order[0], words[0]), (order[-1], words[1])):
            rest = np.delete(values, end)
            strength = float(np.min(np.abs(rest - values[end]))) / gap
            if strength >= 1:
                offers.append((0, -strength, int(end), word))
    hues = [g.hue for g in known]
    for i, g in enumerate(known):
        if g.hue is not None and hues.count(g.hue) == 1:
            offers.append((0, -g.colourfulness / SCALES[1][1], i, g.hue))
    sizes = np.asarray([g.size for g in known], dtype=np.float64)
    order = np.argsort(sizes, kind="stable")
    words = ("smaller", "larger") if len(known) == 2 else ("smallest", "largest")
    for end, word in ((order[0], words[0]), (order[-1], words[1])):
        rest = np.delete(sizes, end)
        ratio = float(np.min(rest / sizes[end]) if word == words[0] else np.min(sizes[end] / rest))
        if ratio >= SIZE_RATIO:
            offers.append((1, -ratio, int(end), word))
    chosen: list[str | None] = [None] * len(known)
    for _, _, i, word in sorted(offers):
        if chosen[i] is None and not fixed[i] and word not in chosen:
            chosen[i] = word
    return chosen
