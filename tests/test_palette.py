"""Cluster colours: one palette for the report and the web app, distinct neighbours at any k."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imgcluster.palette import (
    MAX_COLOURS,
    NOISE_COLOUR,
    cluster_colour,
    palette,
    srgb_to_lab,
)


def lab(colours: list[str]) -> np.ndarray:
    return srgb_to_lab(np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=float))


def test_a_cluster_keeps_its_colour_whatever_the_number_of_clusters() -> None:
    assert palette(40) == palette(256)[:40] == [cluster_colour(c) for c in range(40)]
    assert palette(12) == palette(12)  # deterministic


@pytest.mark.parametrize("k", [10, 20, 40, MAX_COLOURS])
def test_no_two_of_the_first_k_colours_look_alike(k: int) -> None:
    points = lab(palette(k))
    gaps = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    np.fill_diagonal(gaps, np.inf)
    # CIELAB distance: ~2.3 is just noticeable; 10 is plainly different side by side.
    assert gaps.min() > {10: 40, 20: 30, 40: 20}.get(k, 10)


def test_neighbouring_ids_differ_beyond_the_palette_and_noise_stays_grey() -> None:
    colours = [cluster_colour(c) for c in range(3 * MAX_COLOURS)]
    assert all(a != b for a, b in itertools.pairwise(colours))
    noise = lab([NOISE_COLOUR])[0]
    assert cluster_colour(-1) == NOISE_COLOUR
    assert np.sqrt(((lab(palette()) - noise) ** 2).sum(-1)).min() > 10


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="n must be 0 or more"):
        palette(-1)
