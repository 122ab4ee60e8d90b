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
    assert loaded.tree.leaves == clusters  # the run's clusters are the leaves, ids unchanged
    assert loaded.tree.node(loaded.tree.root).size == int(np.sum(loaded.assignments.clusters != -1))
    assert "tree" in loaded.record.timings


def test_cutting_a_run_refits_nothing_and_gives_each_level_its_clusters(digits_run: imgcluster.Run) -> None:
    leaves = np.asarray(digits_run.assignments.clusters)
    assert np.array_equal(digits_run.cut(), leaves) and np.array_equal(digits_run.cut("fine"), leaves)
    for k in (1, 2, digits_run.tree.coarse, len(digits_run.tree.leaves)):
        cut = digits_run.cut(k)
        assert len(set(cut.tolist()) - {-1}) == k
        for leaf in digits_run.tree.leaves:  # a leaf's images stay together at every level
            assert len(set(cut[leaves == leaf].tolist())) == 1
    assert len(set(digits_run.cut("coarse").tolist()) - {-1}) == digits_run.tree.coarse
    names = digits_run.node_names()
    assert set(names) == {n.id for n in digits_run.tree.nodes} and all(names.values())


def test_a_filed_image_lands_in_a_leaf_and_each_of_its_ancestors(digits_run: imgcluster.Run, workspace: Path) -> None:
    images = [r.path for r in digits_run.images[:3]]
    for filed in imgcluster.predict(images, run=digits_run.key, workspace=workspace):
        assert filed.cluster in digits_run.tree.leaves
        assert filed.ancestors == digits_run.tree.ancestors(filed.cluster)
        assert filed.ancestors[-1] == digits_run.tree.root
        for node in filed.ancestors:  # each ancestor's cluster at its own level holds the image's leaf
            cut = digits_run.cut(f"node:{node}")
            assert set(cut[np.asarray(digits_run.assignments.clusters) == filed.cluster].tolist()) == {node}


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
    assert loaded.tree.leaves == digits_run.tree.leaves
    assert len(set(loaded.cut(2).tolist()) - {-1}) == 2
    assert imgcluster.load_run("old", workspace=workspace).record.tree is None  # reading wrote nothing
    [filed] = imgcluster.predict([digits_run.images[0].path], run="old", workspace=workspace)
    assert filed.ancestors and filed.ancestors[-1] == loaded.tree.root


def test_proposals_record_the_node_they_attach_under(digits_run: imgcluster.Run) -> None:
    tree = digits_run.tree
    leaf = tree.leaves[0]
    attached = attach_proposals([ProposedCluster(leaf, 5, 5, []), ProposedCluster(999, 5, 5, [])], tree)
    assert attached[0].parent == tree.node(leaf).parent and attached[1].parent is None


def test_tree_export_evaluate_and_compare_take_a_level(digits_dir: Path, digits_run: imgcluster.Run,
                                                       workspace: Path, tmp_path: Path) -> None:
    shown = cli("tree", "--run", digits_run.key, "--workspace", str(workspace), "--json")
    assert shown.exit_code == 0, shown.output
    tree = json.loads(shown.stdout)
    assert tree["stored"] and tree["default"] == len(digits_run.tree.leaves) and tree["root"] == digits_run.tree.root
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
    first, second = digits_run.tree.leaves[:2]
    merged = imgcluster.merge_clusters([first, second], digits_run.key, workspace=workspace, run_key="merged")
    loaded = imgcluster.load_run("merged", workspace=workspace)
    assert loaded.record.tree is not None and loaded.tree.space == "map"  # a derived run measures on its map
    assert loaded.tree.leaves == sorted(set(merged.assignments.clusters.tolist()) - {-1})
    assert second not in loaded.tree.leaves and "edit" in loaded.tree.default_reason
