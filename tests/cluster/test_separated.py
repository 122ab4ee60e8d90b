"""Small clusters survive a fit on a sample (issue 25): auto mode carves out well-separated groups
its grid of sizes cannot see, and leaves alone the clusters it found."""

import numpy as np

import imgcluster
from imgcluster.cluster.separated import carve_separated


def _collection(sizes: list[int], d: int = 16, spread: float = 0.12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised vectors around orthogonal centres (well separated), one group per size, shuffled;
    and their labels."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(d, len(sizes))))[0].T
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[truth] + rng.normal(scale=spread, size=(len(truth), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(len(truth))
    return x[order].astype(np.float32), truth[order]


def _best_jaccard(found: np.ndarray, members: np.ndarray) -> float:
    labels, overlaps = np.unique(found[members & (found >= 0)], return_counts=True)
    if not len(labels):
        return 0.0
    return max(overlap / (members.sum() + (found == label).sum() - overlap)
               for label, overlap in zip(labels, overlaps))


def test_a_cluster_of_0_3_percent_fitted_on_a_sample_is_found():
    # 36 of 12,000 images, about 18 of them in the 6,000-image fit sample: under auto mode's
    # smallest grid size (0.5% of 6,000 = 30 at the fit's scale, 25 in its 5,000-point search)
    # and about 8 in its 2,500-point score.
    x, truth = _collection([2393] * 5 + [36])
    _, clustering = imgcluster.fit_clusters(
        x, imgcluster.ReduceConfig(method="none", map_method="pca", fit_sample=6_000, seed=0),
        imgcluster.ClusterConfig(seed=0))
    small = truth == 5
    assert _best_jaccard(clustering.labels, small) >= 0.8
    # New points of the small cluster are predicted into it too (the space is the vectors: method none).
    found = np.bincount(clustering.labels[small & (clustering.labels >= 0)]).argmax()
    predicted, _ = clustering.clusterer.predict(x[small])
    assert np.mean(predicted == found) >= 0.8
    for big in range(5):  # the big ones are still found whole
        assert _best_jaccard(clustering.labels, truth == big) >= 0.9


def test_clusters_already_found_are_left_alone():
    x, truth = _collection([400, 300, 200])
    carved = carve_separated(x, truth, np.ones(len(truth)), embeddings=x)
    assert carved.groups == []
    assert np.array_equal(carved.labels, truth)


def test_a_merged_separated_group_is_carved_out_and_a_piece_of_a_cluster_is_not():
    x, truth = _collection([600, 40])
    merged = np.zeros(len(truth), dtype=np.int64)  # one cluster holding both
    carved = carve_separated(x, merged, np.ones(len(truth)), embeddings=x, min_size=10)
    assert len(carved.groups) == 1 and carved.groups[0]["taken_from"] == 0
    assert _best_jaccard(carved.labels, truth == 1) >= 0.9
    assert _best_jaccard(carved.labels, truth == 0) >= 0.9  # the big one is not cut into pieces


def test_an_absolute_min_cluster_size_keeps_enough_of_its_groups_in_the_fit_sample():
    from imgcluster.cluster.settings import (
        LARGEST_FIT_SAMPLE,
        SAMPLE_POINTS_OF_SMALLEST,
        fit_sample_for,
    )

    at_150k = fit_sample_for(15_000, 150_000, imgcluster.ClusterConfig(min_cluster_size=300))
    at_1m = fit_sample_for(15_000, 1_000_000, imgcluster.ClusterConfig(min_cluster_size=300))
    assert at_150k == 15_000  # 300 of 150,000 already hold 30 of its points
    assert 300 * at_1m / 1_000_000 >= SAMPLE_POINTS_OF_SMALLEST > 300 * 15_000 / 1_000_000
    assert fit_sample_for(15_000, 100_000_000, imgcluster.ClusterConfig(min_cluster_size=300)) == LARGEST_FIT_SAMPLE
    assert fit_sample_for(15_000, 1_000_000, imgcluster.ClusterConfig()) == 15_000  # auto mode: no minimum given
    assert fit_sample_for(0, 1_000_000, imgcluster.ClusterConfig(min_cluster_size=300)) == 1_000_000  # 0: all


def test_a_given_min_cluster_size_never_merges_a_separated_group_above_it():
    # 80 images around a centre near one of five large groups: HDBSCAN at min_cluster_size=40 folds
    # them into that group (1,280 images); the neighbour graph keeps them apart, so the run must not.
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(16, 6)))[0].T
    centres[5] = centres[0] + 1.8 * centres[5]
    centres[5] /= np.linalg.norm(centres[5])
    truth = np.repeat(np.arange(6), [1200] * 5 + [80])
    x = centres[truth] + rng.normal(scale=0.12, size=(len(truth), 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    order = rng.permutation(len(truth))
    x, truth = x[order], truth[order]
    _, clustering = imgcluster.fit_clusters(
        x, imgcluster.ReduceConfig(method="none", map_method="pca", seed=0),
        imgcluster.ClusterConfig(min_cluster_size=40, seed=0))
    small = truth == 5
    assert clustering.params["method"] == "hdbscan" and clustering.params["carved"]
    assert _best_jaccard(clustering.labels, small) >= 0.8
    for big in range(5):
        assert _best_jaccard(clustering.labels, truth == big) >= 0.9
    # New points (jittered copies of every group's members) are filed where their group was found,
    # through the renumbering carving made.
    fresh = x + np.random.default_rng(1).normal(scale=0.01, size=x.shape).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    predicted, _ = clustering.clusterer.predict(fresh)
    for group in range(6):
        members = (truth == group) & (clustering.labels >= 0)
        found = np.bincount(clustering.labels[members]).argmax()
        assert np.mean(predicted[truth == group] == found) >= 0.8
