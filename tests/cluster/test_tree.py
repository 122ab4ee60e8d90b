"""The cluster tree on arrays: consistent, nested cuts, leaves finer than the clusters, the levels a user
names, names from leaves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage
from sklearn.metrics import normalized_mutual_info_score

from imgcluster.cluster.leaves import split_clusters, split_one
from imgcluster.cluster.tree import LINKAGES, build_tree, cut_labels, level_k, merge_order
from imgcluster.errors import ConfigError
from imgcluster.run.tree import common_name, node_names


def nested_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 super-clusters far apart, each of 3 clusters near one another: (points, fine, coarse)."""
    rng = np.random.default_rng(seed)
    points, fine, coarse = [], [], []
    for top in range(3):
        centre = rng.normal(scale=40, size=5)
        for sub in range(3):
            middle = centre + rng.normal(scale=6, size=5)
            points.append(middle + rng.normal(size=(40, 5)))
            fine += [top * 3 + sub] * 40
            coarse += [top] * 40
    return np.concatenate(points), np.array(fine), np.array(coarse)


@pytest.fixture
def run_like() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nested blobs clustered into their 9 fine clusters (as a run would; ids shuffled), a few unclustered."""
    points, fine, coarse = nested_blobs()
    labels = np.random.default_rng(1).permutation(9)[fine]
    labels[::37] = -1
    return points, labels, coarse


@pytest.mark.parametrize("method", LINKAGES)
def test_children_partition_their_parent_and_every_image_is_in_one_leaf(method, run_like) -> None:
    points, labels, _ = run_like
    tree = build_tree(labels, points, linkage=method)
    assert sorted(tree.leaves) == sorted(set(labels.tolist()) - {-1})  # the run's clusters, ids unchanged
    leaves_under = {leaf: {leaf} for leaf in tree.leaves}
    for node_id in tree.merges:
        node = tree.node(node_id)
        parts = [leaves_under[c] for c in node.children]
        assert len(parts) == 2 and not parts[0] & parts[1]
        leaves_under[node_id] = parts[0] | parts[1]
        assert node.size == sum(tree.node(c).size for c in node.children)
        assert all(tree.node(c).parent == node_id for c in node.children)
    root = tree.node(tree.root)
    assert leaves_under[tree.root] == set(tree.leaves) and root.size == int(np.sum(labels != -1))
    for leaf in tree.leaves:
        assert tree.node(leaf).size == int(np.sum(labels == leaf))
        assert 0 <= tree.node(leaf).persistence <= 1


def test_a_cut_at_k_gives_k_clusters_each_a_union_of_the_finer_cuts(run_like) -> None:
    points, labels, _ = run_like
    tree = build_tree(labels, points)
    finer = cut_labels(tree, labels, len(tree.leaves))
    assert np.array_equal(finer, labels)  # the finest cut is the run itself
    for k in range(len(tree.leaves) - 1, 0, -1):
        cut = cut_labels(tree, labels, k)
        assert len(set(cut.tolist()) - {-1}) == k
        assert np.array_equal(cut == -1, labels == -1)  # unclustered stays unclustered
        for cluster in set(finer.tolist()) - {-1}:  # nested: a finer cluster never splits
            assert len(set(cut[finer == cluster].tolist())) == 1
        finer = cut


def test_the_tree_recovers_the_super_clusters_and_the_coarse_level_finds_them(run_like) -> None:
    points, labels, coarse = run_like
    tree = build_tree(labels, points)
    clustered = labels != -1
    assert tree.coarse == 3
    cut = cut_labels(tree, labels, "coarse")
    assert normalized_mutual_info_score(coarse[clustered], cut[clustered]) == pytest.approx(1.0)


@pytest.mark.parametrize("method", LINKAGES)
def test_on_unit_weights_each_linkage_is_scipys(method) -> None:
    points = np.random.default_rng(3).normal(size=(60, 4))
    heights = [h for _, _, h in merge_order(points, np.ones(len(points)), method)]
    assert np.allclose(heights, linkage(points, method)[:, 2])


@pytest.mark.parametrize("method", LINKAGES)
def test_a_leaf_weighs_as_many_images_as_it_holds(method) -> None:
    # Leaves of 1-6 images each, as scipy sees them: each image a copy of its leaf's centroid.
    rng = np.random.default_rng(4)
    centroids, sizes = rng.normal(size=(30, 3)), rng.integers(1, 7, 30)
    heights = [h for _, _, h in merge_order(centroids, sizes, method)]
    expanded = linkage(np.repeat(centroids, sizes, axis=0), method)[:, 2]
    assert np.allclose(heights, expanded[expanded > 1e-9])


def test_levels_name_cuts_and_bad_ones_say_what_to_give(run_like) -> None:
    points, labels, _ = run_like
    tree = build_tree(labels, points)
    assert level_k(tree, None) == level_k(tree, "default") == level_k(tree, "fine") == len(tree.leaves)
    assert level_k(tree, "coarse") == tree.coarse and level_k(tree, "4") == 4
    for node in tree.merges:  # a node's level: the finest cut where that node is one cluster
        assert node in tree.cut(level_k(tree, f"node:{node}"))
        assert node not in tree.cut(level_k(tree, f"node:{node}") + 1)
    with pytest.raises(ConfigError, match="give 1 to 9"):
        level_k(tree, 10)
    with pytest.raises(ConfigError, match="give 1 to 9"):
        level_k(tree, "0")
    with pytest.raises(ConfigError, match="No level called 'middle'. Give default"):
        level_k(tree, "middle")
    with pytest.raises(ConfigError, match="no node '999'.*imgcluster tree"):
        level_k(tree, "node:999")


def test_a_run_without_clusters_has_an_empty_tree() -> None:
    tree = build_tree(np.full(5, -1), np.zeros((5, 2)))
    assert tree.root is None and tree.leaves == []
    assert np.array_equal(cut_labels(tree, np.full(5, -1), None), np.full(5, -1))


def test_inner_nodes_are_named_by_what_their_leaves_share_or_as_mixed() -> None:
    assert common_name([("Beagle", 3), ("collie", 5)]) == "dog"
    assert common_name([("dog · Beagle", 3), ("dog · collie", 5)]) == "dog"
    assert common_name([("collie", 5), ("sports car", 9), ("daisy", 1)]) == "mixed: sports car, collie, daisy"
    assert common_name([("my cats", 2), ("my cats", 4)]) == "my cats"
    assert common_name([]) is None
    # Unsure leaves ("beagle?") are still nodes of the hierarchy; the node above reads unsure too.
    assert common_name([("Beagle?", 3), ("collie", 5)]) == "dog?"
    assert common_name([("dog?", 5), ("dog", 5)]) == "dog?"
    # Leaves the namer did not recognise keep their own guesses; above them only "unrecognised" holds.
    assert common_name([("unrecognised (stopwatch?)", 4), ("unrecognised (hook?)", 6)]) == "unrecognised"
    assert common_name([("unrecognised (hook?)", 6), ("daisy", 2)]) == "mixed: unrecognised, daisy"


def nested_run() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nested blobs clustered into their 3 super-clusters only (as auto mode may keep), a few unclustered:
    (points, labels, fine truth, leaves from split_clusters)."""
    points, fine, coarse = nested_blobs()
    labels = coarse.copy()
    labels[::37] = -1
    return points, labels, fine, split_clusters(labels, points)


@pytest.fixture
def coarse_run() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``nested_run()``."""
    return nested_run()


def test_leaves_finer_than_the_run_clusters_partition_them(coarse_run) -> None:
    points, labels, fine, leaves = coarse_run
    assert np.array_equal(leaves == -1, labels == -1)
    for leaf in set(leaves.tolist()) - {-1}:  # each leaf inside one cluster
        assert len(set(labels[leaves == leaf].tolist())) == 1
    clustered = labels != -1
    # The clusters' well separated parts are found: the leaves are the 9 fine clusters.
    assert normalized_mutual_info_score(fine[clustered], leaves[clustered]) == pytest.approx(1.0)
    tree = build_tree(labels, points, leaves=leaves)
    assert tree.clusters == [0, 1, 2] and tree.n_clusters == 3 and len(tree.leaves) == 9
    for cluster in tree.clusters:  # a split cluster is the node its parts merge up to
        assert tree.leaves_under(cluster) == sorted(set(leaves[labels == cluster].tolist()))
        assert tree.node(cluster).size == int(np.sum(labels == cluster))
    assert np.array_equal(cut_labels(tree, leaves, "default"), labels)  # the default cut is the run
    assert np.array_equal(cut_labels(tree, leaves, "fine"), leaves)


def test_a_cut_at_k_above_the_run_clusters_gives_k_nested_clusters(coarse_run) -> None:
    points, labels, _, leaves = coarse_run
    tree = build_tree(labels, points, leaves=leaves)
    coarser = labels
    for k in range(tree.n_clusters, len(tree.leaves) + 1):
        cut = cut_labels(tree, leaves, k)
        assert len(set(cut.tolist()) - {-1}) == k and np.array_equal(cut == -1, labels == -1)
        for cluster in set(cut.tolist()) - {-1}:  # a finer cut splits the coarser one's clusters, never mixes them
            assert len(set(coarser[cut == cluster].tolist())) == 1
        coarser = cut
    with pytest.raises(ConfigError, match="3 clusters and its tree 9 leaves.*give 1 to 9"):
        level_k(tree, 10)


def test_clean_clusters_stay_single_leaves() -> None:
    rng = np.random.default_rng(5)
    points = np.concatenate([rng.normal(loc=20 * i, size=(150, 5)) for i in range(4)])
    labels = np.repeat(np.arange(4), 150)
    leaves = split_clusters(labels, points)
    assert np.array_equal(leaves, labels)
    tree = build_tree(labels, points, leaves=leaves)
    assert tree.leaves == tree.clusters == [0, 1, 2, 3]


def test_parts_of_a_cluster_are_named_after_it(coarse_run) -> None:
    points, labels, _, leaves = coarse_run
    tree = build_tree(labels, points, leaves=leaves)
    names = node_names(tree, {0: "my dogs", 1: "my cats"})
    assert names[0] == "my dogs" and names[2] == "cluster 2"
    parts = sorted(tree.leaves_under(0), key=lambda leaf: -tree.node(leaf).size)
    assert [names[p] for p in parts] == [f"my dogs · part {i}" for i in range(1, len(parts) + 1)]
    # A node between a cluster split in 3+ parts and its parts is named for the parts it holds, not
    # exactly like the cluster (one name for two levels of the tree).
    between = [n.id for n in tree.nodes if n.children and n.id not in tree.clusters and n.parent in tree.clusters]
    assert between
    for node in between:
        held = sorted(int(names[leaf].rsplit(" ", 1)[1]) for leaf in tree.leaves_under(node))
        cluster = names[tree.node(node).parent]
        assert names[node] in (f"{cluster} · parts {held[0]}-{held[-1]}",
                               f"{cluster} · parts {', '.join(map(str, held))}")
    # Above the clusters, names come from the clusters' names, not their parts'.
    assert names[tree.root].startswith("mixed: ") and set(names[tree.root][7:].split(", ")) == {"my dogs", "my cats"}


def test_a_small_featureless_cluster_is_never_split_and_two_apart_always_are() -> None:
    # A cluster of a few dozen points whose Gaussian stand-in has no split of MIN_PART-point parts
    # once passed any split of its own (the stand-in scored -1): one blob was cut in two ~1 time in 5.
    for seed in range(50):
        rng = np.random.default_rng(seed)
        for size in (20, 22, 25, 30, 39, 45, 60):
            assert split_one(rng.normal(size=(size, 5)), seed=seed) is None, (seed, size)
        apart = np.concatenate([rng.normal(size=(20, 5)), rng.normal(loc=30, size=(20, 5))])
        parts = split_one(apart, seed=seed)
        assert parts is not None and len(set(parts[:20].tolist())) == len(set(parts[20:].tolist())) == 1
        assert parts[0] != parts[-1]


def test_a_large_cluster_in_the_full_embedding_space_splits_in_little_memory() -> None:
    import tracemalloc

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(2, 1280))
    x = np.concatenate([c + 0.2 * rng.normal(size=(3000, 1280)) for c in centres]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tracemalloc.start()
    try:
        parts = split_one(x, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parts is not None and len(set(parts[:3000].tolist())) == len(set(parts[3000:].tolist())) == 1
    assert parts[0] != parts[-1]
    # Well under one float64 copy of the cluster (6,000 x 1,280: 59 MiB); an (m, k, d) array was 117 MiB.
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MiB"
    assert np.array_equal(split_one(x, seed=0), parts)  # the same cluster, the same parts


def pairs_of_split_clusters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6 clusters in 3 pairs (a pair's clusters 10 apart, two pairs 60 apart, the third 150 away),
    each cluster of two parts 50 apart: merges inside clusters higher than the first between them."""
    rng = np.random.default_rng(4)
    pairs = [(0.0, 0.0), (60.0, 0.0), (30.0, 150.0)]
    points, labels, leaves = [], [], []
    for cluster in range(6):
        x, y = pairs[cluster // 2]
        x += 5.0 if cluster % 2 else -5.0
        for part, dy in enumerate((-25.0, 25.0)):
            points.append(np.array([x, y + dy]) + 0.5 * rng.normal(size=(20, 2)))
            labels += [cluster] * 20
            leaves += [10 + 2 * cluster + part] * 20
    return np.concatenate(points), np.array(labels), np.array(leaves)


def test_the_coarse_cut_is_measured_on_the_merges_between_clusters_and_is_coarser_than_the_run() -> None:
    points, labels, leaves = pairs_of_split_clusters()
    tree = build_tree(labels, points, leaves=leaves)
    assert tree.n_clusters == 6 and len(tree.leaves) == 12
    # The pairs are the coarse level (60 over 10), though each cluster's parts lie 50 apart.
    assert tree.coarse == 3
    coarse = cut_labels(tree, leaves, "coarse")
    assert normalized_mutual_info_score(labels // 2, coarse) == pytest.approx(1.0)
    points, labels, _, leaves = nested_run()
    tree = build_tree(labels, points, leaves=leaves)  # the run's 3 clusters are its clearest level
    assert tree.n_clusters == 3 and 2 <= tree.coarse < tree.n_clusters  # coarse is coarser than the default


def test_a_clusters_parts_follow_its_images_not_its_id() -> None:
    # A --follow fit renumbers clusters: the same cluster, under another id, is split the same way.
    # Its groups are only just apart, so whether and where it splits depends on the seed.
    rng = np.random.default_rng(6)
    points = np.concatenate([rng.normal(loc=(6 * (i % 2), 40 * (i // 2), 0, 0, 0), size=(600, 5)) for i in range(4)])
    labels = np.repeat([0, 1], 1200)
    ids = np.arange(len(points)) * 3 + 7
    split = 0
    for seed in range(6):
        first = split_clusters(labels, points, seed=seed, ids=ids)
        renumbered = split_clusters(np.where(labels == 0, 5, 2), points, seed=seed, ids=ids)
        for cluster in (0, 1):
            rows = labels == cluster
            assert normalized_mutual_info_score(first[rows], renumbered[rows]) == pytest.approx(1.0)
            split += len(set(first[rows].tolist())) > 1
    assert 0 < split < 12  # some splits, some not: the seed mattered


def test_a_leaf_id_the_tree_does_not_know_is_cut_as_unclustered_with_a_warning(coarse_run, caplog) -> None:
    points, labels, _, leaves = coarse_run
    tree = build_tree(labels, points, leaves=leaves)
    stray = leaves.copy()
    unknown = max(n.id for n in tree.nodes) + 1
    stray[:5] = unknown  # not a node of the tree: a damaged or mismatched leaf column
    with caplog.at_level("WARNING", logger="imgcluster.cluster.tree"):
        cut = cut_labels(tree, stray, 2)
    assert (cut[:5] == -1).all() and np.array_equal(cut[5:], cut_labels(tree, leaves, 2)[5:])
    assert str(unknown) in caplog.text and "unclustered" in caplog.text
    # A node above the cut given for its images (a run's cluster, at its leaves' level) stays itself.
    assert set(cut_labels(tree, labels, "fine").tolist()) == set(labels.tolist())
