"""A run's cluster tree end to end: stored with the run, cut at a level, named, filed into, shown."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import imgcluster
from imgcluster.api.predict import load_predictor
from imgcluster.cli import app
from imgcluster.run.tree import attach_proposals
from imgcluster.store import ProposedCluster, Workspace


@pytest.fixture(scope="module")
def workspace(digits_run: imgcluster.Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the digits run's workspace (tests here write evaluations and runs)."""
    copy = tmp_path_factory.mktemp("tree") / "ws"
    shutil.copytree(digits_run.workspace, copy)
    return copy


def cli(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_a_saved_runs_tree_round_trips_through_the_store(digits_run: imgcluster.Run, workspace: Path) -> None:
    loaded = imgcluster.load_run(digits_run.key, workspace=workspace)
    assert loaded.record.tree is not None and loaded.record.tree == digits_run.record.tree
    clusters = sorted(c.cluster for c in digits_run.clusters() if c.cluster != -1)
    assert loaded.tree.clusters == clusters  # the run's clusters are nodes of the tree, ids unchanged
    assert np.array_equal(loaded.assignments.leaf_per_image(), digits_run.assignments.leaf_per_image())
    assert loaded.tree.node(loaded.tree.root).size == int(np.sum(loaded.assignments.clusters != -1))
    assert "tree" in loaded.record.timings


def test_cutting_a_run_refits_nothing_and_gives_each_level_its_clusters(digits_run: imgcluster.Run) -> None:
    clusters, leaves = np.asarray(digits_run.assignments.clusters), digits_run.assignments.leaf_per_image()
    assert np.array_equal(digits_run.cut(), clusters) and np.array_equal(digits_run.cut("fine"), leaves)
    for k in (1, 2, digits_run.tree.coarse, digits_run.tree.n_clusters, len(digits_run.tree.leaves)):
        cut = digits_run.cut(k)
        assert len(set(cut.tolist()) - {-1}) == k
        for leaf in digits_run.tree.leaves:  # a leaf's images stay together at every level
            assert len(set(cut[leaves == leaf].tolist())) == 1
        if k <= digits_run.tree.n_clusters:  # and so do a cluster's, at its level and above
            assert all(len(set(cut[clusters == c].tolist())) == 1 for c in digits_run.tree.clusters)
    assert len(set(digits_run.cut("coarse").tolist()) - {-1}) == digits_run.tree.coarse
    names = digits_run.node_names()
    assert set(names) == {n.id for n in digits_run.tree.nodes} and all(names.values())


def test_a_filed_image_lands_in_a_leaf_and_each_of_its_ancestors(digits_run: imgcluster.Run, workspace: Path) -> None:
    images = [r.path for r in digits_run.images[:3]]
    leaves = digits_run.assignments.leaf_per_image()
    for filed in imgcluster.predict(images, run=digits_run.key, workspace=workspace):
        assert filed.leaf in digits_run.tree.leaves and filed.cluster in digits_run.tree.clusters
        assert filed.ancestors == digits_run.tree.ancestors(filed.leaf)
        assert filed.cluster == filed.leaf or filed.cluster in filed.ancestors  # a part of its cluster
        assert filed.ancestors[-1] == digits_run.tree.root
        for node in filed.ancestors:  # each ancestor's cluster at its own level holds the image's leaf
            cut = digits_run.cut(f"node:{node}")
            assert set(cut[leaves == filed.leaf].tolist()) == {node}


def test_a_run_saved_before_trees_still_loads_with_a_tree_built_on_its_map(digits_run: imgcluster.Run,
                                                                          workspace: Path) -> None:
    ws = Workspace.open(workspace)
    try:
        old = dataclasses.replace(digits_run.record, key="old", tree=None)
        arrays, _, params = ws.read_predictor(digits_run.key)
        ws.write_predictor("old", arrays, None, params, index_from=digits_run.key)
        ws.save_run(old, digits_run.assignments)
    finally:
        ws.close()
    loaded = imgcluster.load_run("old", workspace=workspace)
    assert loaded.record.tree is None and loaded.tree.space == "map"
    assert loaded.tree.leaves == loaded.tree.clusters == digits_run.tree.clusters  # no finer leaves
    assert len(set(loaded.cut(2).tolist()) - {-1}) == 2
    assert imgcluster.load_run("old", workspace=workspace).record.tree is None  # reading wrote nothing
    [filed] = imgcluster.predict([digits_run.images[0].path], run="old", workspace=workspace)
    assert filed.ancestors and filed.ancestors[-1] == loaded.tree.root and filed.leaf == filed.cluster


def test_proposals_record_the_node_they_attach_under(digits_run: imgcluster.Run) -> None:
    tree = digits_run.tree
    cluster = tree.clusters[0]
    attached = attach_proposals([ProposedCluster(cluster, 5, 5, []), ProposedCluster(999, 5, 5, [])], tree)
    assert attached[0].parent == tree.node(cluster).parent and attached[1].parent is None


def test_tree_export_evaluate_and_compare_take_a_level(digits_dir: Path, digits_run: imgcluster.Run,
                                                       workspace: Path, tmp_path: Path) -> None:
    shown = cli("tree", "--run", digits_run.key, "--workspace", str(workspace), "--json")
    assert shown.exit_code == 0, shown.output
    tree = json.loads(shown.stdout)
    assert tree["stored"] and tree["root"] == digits_run.tree.root
    assert tree["default"] == digits_run.tree.n_clusters and tree["fine"] == len(digits_run.tree.leaves)
    assert {n["id"]: n["size"] for n in tree["nodes"]} == {n.id: n.size for n in digits_run.tree.nodes}
    text = cli("tree", "--run", digits_run.key, "--workspace", str(workspace)).stdout
    assert "coarse cut" in text and tree["nodes"][-1]["name"] in " ".join(text.split())
    cut = cli("tree", "--run", digits_run.key, "--workspace", str(workspace), "--level", "2", "--json")
    assert len(json.loads(cut.stdout)["cut"]) == 2

    done = imgcluster.export(tmp_path / "coarse.csv", digits_run.key, to="csv", workspace=workspace, level="coarse")
    with open(done.dest) as handle:
        rows = list(csv.DictReader(handle))
    assert len({r["cluster"] for r in rows} - {"-1"}) == digits_run.tree.coarse
    metrics = imgcluster.evaluate(digits_dir / "labels.csv", digits_run.key, workspace=workspace, level=2)
    assert metrics["level"] == "2" and metrics["n_clusters"] == 2
    fine = imgcluster.evaluate(digits_dir / "labels.csv", digits_run.key, workspace=workspace)
    assert "level" not in fine and fine["all"]["nmi"] != metrics["all"]["nmi"]
    same = imgcluster.compare_runs(digits_run.key, digits_run.key, workspace=workspace, level="coarse")
    assert same.nmi == pytest.approx(1.0) and len(same.clusters_a) == digits_run.tree.coarse + (
        -1 in digits_run.assignments.clusters)


def test_an_edited_run_gets_its_own_tree_over_the_clusters_it_keeps(digits_run: imgcluster.Run,
                                                                    workspace: Path) -> None:
    first, second = digits_run.tree.clusters[:2]
    merged = imgcluster.merge_clusters([first, second], digits_run.key, workspace=workspace, run_key="merged")
    loaded = imgcluster.load_run("merged", workspace=workspace)
    assert loaded.record.tree is not None and loaded.tree.space == "map"  # a derived run measures on its map
    assert loaded.tree.leaves == sorted(set(merged.assignments.clusters.tolist()) - {-1})
    assert second not in loaded.tree.leaves and "edit" in loaded.tree.default_reason


@pytest.fixture(scope="module")
def split_run(digits_dir: Path, digits_run: imgcluster.Run, tmp_path_factory: pytest.TempPathFactory) -> imgcluster.Run:
    """k-means told 2 clusters on the digits (a copy of their workspace: nothing is embedded again):
    each cluster holds several digits, well separated parts."""
    copy = tmp_path_factory.mktemp("split") / "ws"
    shutil.copytree(digits_run.workspace, copy)
    return imgcluster.cluster(digits_dir / "images", method="kmeans", k=2, workspace=copy, run_key="two")


def test_clusters_holding_separate_groups_get_finer_leaves_that_round_trip(split_run: imgcluster.Run) -> None:
    tree, clusters = split_run.tree, np.asarray(split_run.assignments.clusters)
    assert tree.n_clusters == 2 and len(tree.leaves) > 2  # the tree goes below the run's clusters
    loaded = imgcluster.load_run("two", workspace=split_run.workspace)
    assert loaded.record.tree == split_run.record.tree
    leaves = loaded.assignments.leaves
    assert leaves is not None and np.array_equal(leaves, split_run.assignments.leaves)
    for leaf in tree.leaves:  # the leaves partition the clusters
        assert len(set(clusters[leaves == leaf].tolist())) == 1
    assert np.array_equal(loaded.cut(), clusters) and np.array_equal(loaded.cut("fine"), leaves)
    for k in range(3, len(tree.leaves) + 1):  # cuts finer than the run's clusters
        assert len(set(loaded.cut(k).tolist()) - {-1}) == k
    with pytest.raises(imgcluster.ConfigError, match="Run two: .*2 clusters and its tree"):
        loaded.cut(len(tree.leaves) + 1)


def test_a_filed_image_lands_in_a_part_of_its_cluster(split_run: imgcluster.Run) -> None:
    tree, stored = split_run.tree, split_run.assignments.leaves
    images = split_run.images[::50]
    filed = imgcluster.predict([r.path for r in images], run="two", workspace=split_run.workspace)
    assigned = [(image, int(stored[i])) for image, i in zip(filed, range(0, len(stored), 50))
                if image.status == "assigned"]
    assert assigned
    for image, _ in assigned:
        assert image.leaf in tree.leaves_under(image.cluster) and image.ancestors == tree.ancestors(image.leaf)
        assert image.cluster in image.ancestors or image.leaf == image.cluster  # a part of its cluster, at any depth
    # Every one of the run's own images, filed again, lands in its own stored leaf, as it lands in its
    # stored cluster (its nearest image is itself); their stored vectors: embedding all 500 takes long.
    runner = load_predictor("two", workspace=split_run.workspace)
    ws = Workspace.open(split_run.workspace)
    try:
        vectors = ws.load_embeddings(split_run.record.model_id, [r.content_hash for r in split_run.images])
    finally:
        ws.close()
    prediction = runner.predict_vectors(vectors)
    refiled = [runner.filed_image(r.path, prediction, i) for i, r in enumerate(split_run.images)]
    assert [f.cluster for f in refiled] == np.asarray(split_run.assignments.clusters).tolist()
    assert [f.leaf for f in refiled] == np.asarray(stored).tolist()


def test_a_run_saved_before_finer_leaves_still_loads_and_files(split_run: imgcluster.Run) -> None:
    from imgcluster.cluster.tree import build_tree

    record, assignments = split_run.record, split_run.assignments
    flat = build_tree(assignments.clusters, np.column_stack([assignments.x, assignments.y]))
    stored = {k: v for k, v in flat.to_dict().items() if k != "default"}  # as trees were saved before
    ws = Workspace.open(split_run.workspace)
    try:
        old = dataclasses.replace(record, key="flat", tree=imgcluster.ClusterTree.from_dict(stored))
        arrays, _, params = ws.read_predictor(record.key)
        ws.write_predictor("flat", arrays, None, params, index_from=record.key)
        ws.save_run(old, dataclasses.replace(assignments, leaves=None))
    finally:
        ws.close()
    loaded = imgcluster.load_run("flat", workspace=split_run.workspace)
    assert loaded.assignments.leaves is None and loaded.tree.leaves == loaded.tree.clusters == [0, 1]
    assert np.array_equal(loaded.cut("fine"), loaded.assignments.clusters)
    [filed] = imgcluster.predict([split_run.images[0].path], run="flat", workspace=split_run.workspace)
    assert filed.leaf == filed.cluster and filed.ancestors == [loaded.tree.root]


def test_a_level_one_of_two_compared_runs_cannot_give_is_refused_naming_that_run(digits_run: imgcluster.Run,
                                                                                 split_run: imgcluster.Run) -> None:
    where = split_run.workspace  # a copy of the digits' workspace: it holds digits_run too
    first, second = digits_run.tree.clusters[:2]
    imgcluster.merge_clusters([first, second], digits_run.key, workspace=where, run_key="fewer")
    finest = len(digits_run.tree.leaves)  # one more than "fewer" can give: it lost a cluster and is not split
    with pytest.raises(imgcluster.ConfigError, match=f"^Run fewer: A cut at {finest} clusters is impossible"):
        imgcluster.compare_runs(digits_run.key, "fewer", workspace=where, level=finest)
    assert imgcluster.compare_runs(digits_run.key, "fewer", workspace=where, level=2).nmi > 0
