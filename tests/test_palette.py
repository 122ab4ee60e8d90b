"""Cluster colours: one palette for the report and the web app; clusters that touch on the map get
plainly different colours at any k."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imgcluster.palette import (
    DISTINCT,
    MAX_COLOURS,
    NOISE_COLOUR,
    cluster_colour,
    map_adjacency,
    map_colours,
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


def blobs_map(k: int, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k Gaussian blobs at random centres on a 2-D map, close enough that many touch; 5% unclustered."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-1, 1, (k, 2))
    labels = np.repeat(np.arange(k), per)
    points = centres[labels] + rng.normal(0, 0.6 / np.sqrt(k), (len(labels), 2))
    labels[rng.random(len(labels)) < 0.05] = -1
    return points[:, 0], points[:, 1], labels


@pytest.mark.parametrize("k", [5, 40, 300, 1000])
def test_clusters_that_touch_on_the_map_look_plainly_different_at_any_k(k: int) -> None:
    x, y, labels = blobs_map(k, max(20, 20_000 // k))
    colours = map_colours(x, y, labels)
    assert set(colours) == set(range(k))
    ids, _, pairs = map_adjacency(x, y, labels)
    assert len(pairs) >= k // 2  # the blobs do touch: the test has neighbours to tell apart
    gaps = np.sqrt(((lab([colours[int(ids[a])] for a, _ in pairs]) - lab([colours[int(ids[b])] for _, b in pairs])) ** 2
                    ).sum(-1))
    assert gaps.min() >= DISTINCT
    # By id alone, touching clusters 256 apart share a colour from k > 256: what this choice avoids.
    if k > MAX_COLOURS:
        by_id = [cluster_colour(int(ids[a])) == cluster_colour(int(ids[b])) for a, b in pairs]
        assert any(by_id)
    if k <= 40:
        assert len(set(colours.values())) == k  # few clusters: no two share a colour at all


def test_map_colours_are_deterministic_and_ignore_the_points_order() -> None:
    x, y, labels = blobs_map(120, 60)
    order = np.random.default_rng(1).permutation(len(x))
    first = map_colours(x, y, labels)
    assert first == map_colours(x, y, labels) == map_colours(x[order], y[order], labels[order])


def test_touching_is_read_from_the_map_and_few_clusters_keep_their_own_colours() -> None:
    rng = np.random.default_rng(0)
    # 0 and 1 overlap; 2 sits far away from both.
    centres = np.array([[0.0, 0.0], [0.05, 0.0], [5.0, 5.0]])
    labels = np.repeat(np.arange(3), 200)
    points = centres[labels] + rng.normal(0, 0.02, (600, 2))
    ids, sizes, pairs = map_adjacency(points[:, 0], points[:, 1], labels)
    assert ids.tolist() == [0, 1, 2] and sizes.tolist() == [200, 200, 200] and pairs.tolist() == [[0, 1]]
    assert map_colours(points[:, 0], points[:, 1], labels) == {c: cluster_colour(c) for c in range(3)}
    assert map_colours(points[:, 0], points[:, 1], np.full(600, -1)) == {}
    assert map_colours(points[:, 0], points[:, 1], np.zeros(600, dtype=int)) == {0: cluster_colour(0)}
    far_apart = labels * 10**9 + labels  # ids too sparse to count in an array: sorted instead, same answer
    assert map_colours(points[:, 0], points[:, 1], far_apart) == {c * 10**9 + c: cluster_colour(c) for c in range(3)}
    assert map_adjacency(points[:, 0], points[:, 1], far_apart)[2].tolist() == [[0, 1]]
