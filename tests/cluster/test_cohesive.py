"""Cohesive groups (how an update proposes new clusters): groups as tight as asked, the rest left
out, and the same answer when the floats or the order of the points change a little."""

from __future__ import annotations

import numpy as np

from imgcluster.cluster import NOISE
from imgcluster.cluster.cohesive import (cohesive_groups, mean_pairwise_similarity, member_similarity,
                                         neighbour_agreement)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def groups_and_scatter(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two tight groups (30 and 20 points) and 15 scattered points, 64-d unit vectors; truth labels."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(2, 64)))
    points = [unit(centres[0] + 0.03 * rng.normal(size=(30, 64))), unit(centres[1] + 0.04 * rng.normal(size=(20, 64))),
              unit(rng.normal(size=(15, 64)))]
    truth = np.concatenate([np.zeros(30), np.ones(20), np.full(15, NOISE)]).astype(np.int64)
    return np.concatenate(points).astype(np.float32), truth


def partition(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == label).tolist()) for label in set(labels.tolist()) - {NOISE}}


def test_groups_are_as_cohesive_as_asked_and_scattered_points_stay_out() -> None:
    x, truth = groups_and_scatter()
    labels = cohesive_groups(x, min_cohesion=0.8, min_size=5, min_member_similarity=0.5)
    assert partition(labels) == partition(truth)
    for group in partition(labels):
        assert mean_pairwise_similarity(x[sorted(group)]) >= 0.8
    # Without the bar on each member, a scattered point or two may ride along with a tight group
    # (its mean stays above 0.8), but the groups are still there, whole.
    loose = partition(cohesive_groups(x, min_cohesion=0.8, min_size=5))
    assert len(loose) == 2 and all(any(group <= found for found in loose) for group in partition(truth))
    # Both groups together are far less cohesive than either: asked for that, they are one group.
    assert len(partition(cohesive_groups(x[truth >= 0], min_cohesion=0.0, min_size=5))) == 1
    # Groups smaller than min_size are not groups.
    only_big = cohesive_groups(x, min_cohesion=0.8, min_size=25, min_member_similarity=0.5)
    assert np.array_equal(only_big, np.where(truth == 0, 0, NOISE))


def test_small_float_changes_and_the_order_of_the_points_change_nothing() -> None:
    x, _ = groups_and_scatter(seed=1)
    labels = cohesive_groups(x, 0.8, 5, 0.5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        # float16 rounding, as the store keeps embeddings, and a different machine's last digits
        nudged = unit(x.astype(np.float16).astype(np.float32) * (1 + 1e-4 * rng.standard_normal(x.shape)))
        assert np.array_equal(cohesive_groups(nudged, 0.8, 5, 0.5), labels)
        order = rng.permutation(len(x))
        shuffled = cohesive_groups(x[order], 0.8, 5, 0.5)
        assert {frozenset(order[sorted(g)].tolist()) for g in partition(shuffled)} == partition(labels)


def test_mean_pairwise_similarity_and_membership() -> None:
    x, truth = groups_and_scatter()
    similarity = x.astype(np.float64) @ x.T.astype(np.float64)
    n = len(x)
    assert np.isclose(mean_pairwise_similarity(x), (similarity.sum() - np.trace(similarity)) / (n * (n - 1)))
    assert mean_pairwise_similarity(x[:1]) == 1.0
    assert np.allclose(member_similarity(x), (similarity.sum(axis=1) - 1) / (n - 1))
    probability = neighbour_agreement(x, truth)
    assert (probability[truth == NOISE] == 0).all()
    assert probability[truth >= 0].min() > 0.9  # each grouped point's neighbours are in its group
