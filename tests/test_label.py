"""Cluster names and representatives: picked and stored with every run, shown, overridden by hand."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster.label import distinct_choice
from imgcluster.represent import diverse_sample, most_central, most_probable


@pytest.fixture
def digits_copy(digits_run: imgcluster.Run, tmp_path: Path) -> Path:
    """A private copy of the digits run's workspace (the session's run must stay untouched)."""
    return Path(shutil.copytree(digits_run.workspace, tmp_path / "ws"))


def test_representatives_are_central_probable_and_spread() -> None:
    rng = np.random.default_rng(0)
    points = np.r_[rng.normal(0, 0.1, size=(40, 2)), [[3.0, 0.0], [-3.0, 0.0]]]
    centre_first = most_central(points, 5)
    assert np.linalg.norm(points[centre_first[0]] - points.mean(axis=0)) == pytest.approx(
        np.linalg.norm(points - points.mean(axis=0), axis=1).min())
    probabilities = np.linspace(0, 1, len(points))
    assert most_probable(probabilities, points, 2).tolist() == [len(points) - 1, len(points) - 2]
    spread = diverse_sample(points, 3)
    assert spread[0] == centre_first[0] and set(spread[1:].tolist()) == {40, 41}  # the two far points
    assert diverse_sample(np.zeros((6, 2)), 4).tolist() == [0]  # identical images: one view, not four


def test_names_stay_distinct_where_the_scores_allow() -> None:
    scores = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.9, 0.05, 0.05]])
    # Row 2 has the surest claim on term 0; row 1 takes its close second; row 0's second is taken
    # too, and 0.1 is too weak a name, so it shares term 0.
    assert distinct_choice(scores).tolist() == [0, 1, 0]


def test_every_digits_cluster_has_representatives_and_an_imagenet_name(digits_run: imgcluster.Run) -> None:
    clustered = [c.cluster for c in digits_run.clusters() if c.cluster != -1]
    representatives = digits_run.representatives()
    members = {c: set(np.asarray(digits_run.assignments.image_ids)[digits_run.assignments.clusters == c].tolist())
               for c in clustered}
    for cluster in clustered:
        chosen = representatives[cluster]
        assert chosen.central and chosen.probable and chosen.diverse
        assert set(chosen.central + chosen.probable + chosen.diverse) <= members[cluster]
        name = digits_run.names[cluster]
        assert name.source == "imagenet" and name.name and 0 <= name.confidence <= 1
        assert name.level in ("sure", "likely", "unsure")
        assert 1 <= len(name.candidates) <= 3 and name.candidates[0][0] == name.name
    assert len({n.name for n in digits_run.names.values()}) == len(digits_run.names)  # never two alike
    assert digits_run.record.as_info()["naming"] == {"namer": "imagenet"}
    with open(digits_run.outputs["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert {row["name"] for row in rows if row["cluster"] != "-1"} == {n.name for n in digits_run.names.values()}


def test_a_manual_name_wins_and_survives_report_regeneration(digits_run: imgcluster.Run, digits_copy: Path) -> None:
    cluster = digits_run.clusters()[0].cluster
    shown = imgcluster.name_cluster(cluster, "  my   favourite digits ", workspace=digits_copy)
    assert shown is not None and shown.name == "my favourite digits" and shown.source == "manual"
    report = imgcluster.report(workspace=digits_copy)
    assert "my favourite digits" in report.read_text()
    run = imgcluster.load_run(workspace=digits_copy)
    assert run.names[cluster].name == "my favourite digits"
    assert {n.source for n in imgcluster.cluster_names(workspace=digits_copy) if n.cluster == cluster} == {
        "manual", "imagenet"}
    with open(run.outputs["csv"]) as handle:
        assert any(row["name"] == "my favourite digits" for row in csv.DictReader(handle))
    back = imgcluster.name_cluster(cluster, "", workspace=digits_copy)  # an empty name removes it
    assert back is not None and back.source == "imagenet"
    with pytest.raises(imgcluster.ConfigError, match="has no cluster 999"):
        imgcluster.name_cluster(999, "nothing", workspace=digits_copy)


def test_cli_names_a_cluster_lists_names_and_exports(digits_run: imgcluster.Run, digits_copy: Path,
                                                     tmp_path: Path) -> None:
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgcluster.cli", *args, "--workspace", str(digits_copy)],
                              capture_output=True, text=True, timeout=300)

    cluster = digits_run.clusters()[0].cluster
    named = cli("name", str(cluster), "round zeros")
    assert named.returncode == 0 and "round zeros (manual)" in named.stdout, named.stderr
    listed = cli("names", "--json")
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)["shown"]
    assert shown[str(cluster)]["name"] == "round zeros" and shown[str(cluster)]["source"] == "manual"
    exported = cli("export", str(tmp_path / "by-cluster"), "--to", "folders", "--copy")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "by-cluster" / f"{cluster:02d}-round-zeros").is_dir()
    refused = cli("export", str(tmp_path / "by-cluster"))
    assert refused.returncode == 2 and "not an empty folder" in refused.stderr
