"""noise=attach: unclustered images that clearly lean towards a cluster join it, stated per image."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.cluster.noise import attach_noise


def two_groups_with_stragglers(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two tight groups of unit vectors (labels 0, 1), stragglers near group 0 marked noise, and
    one vector far from both, also noise. Returns (vectors, labels, index of the far one)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(16)[:2]
    members = np.repeat(centres, 100, axis=0) + rng.normal(scale=0.05, size=(200, 16))
    stragglers = centres[0] + rng.normal(scale=0.15, size=(20, 16))
    far = -np.ones((1, 16))
    x = np.vstack([members, stragglers, far])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.r_[np.zeros(100), np.ones(100), -np.ones(21)].astype(np.int64)
    return x.astype(np.float32), labels, len(x) - 1


def test_stragglers_join_their_group_and_the_far_image_stays_out() -> None:
    x, labels, far = two_groups_with_stragglers()
    result = attach_noise(x, labels, np.ones(len(x)), threshold=0.5)
    assert result.attached[200:220].all()
    assert (result.labels[200:220] == 0).all()
    assert result.labels[far] == -1 and not result.attached[far]
    assert np.array_equal(result.labels[:200], labels[:200]) and not result.attached[:200].any()
    assert (result.probabilities[200:220] >= 0.5).all()


def test_a_higher_threshold_attaches_no_more() -> None:
    x, labels, _ = two_groups_with_stragglers()
    probabilities = np.linspace(0.2, 1.0, len(x))  # members' own probabilities weigh the vote
    counts = [attach_noise(x, labels, probabilities, threshold).attached.sum() for threshold in (0.0, 0.6, 0.9)]
    assert counts[0] >= counts[1] >= counts[2]
    assert counts[0] > counts[2]


def test_attach_in_a_run_is_written_per_image(digits_dir: Path, digits_run: imgcluster.Run, tmp_path: Path) -> None:
    # A copy of the shared run's workspace: its embeddings are reused, its newest run stays the shared one.
    workspace = tmp_path / "workspace"
    shutil.copytree(digits_run.workspace, workspace)
    # HDBSCAN leaves images unclustered; the default (auto) may answer with k-means, which leaves none.
    kept = imgcluster.cluster(digits_dir / "images", model="efficientnet-lite0", workspace=workspace,
                              config=imgcluster.RunConfig(cluster=imgcluster.ClusterConfig(method="hdbscan")))
    config = imgcluster.RunConfig(cluster=imgcluster.ClusterConfig(method="hdbscan", noise="attach",
                                                                   attach_threshold=0.3))
    run = imgcluster.cluster(digits_dir / "images", model="efficientnet-lite0", config=config, workspace=workspace)
    before = dict(zip(kept.assignments.image_ids.tolist(), kept.assignments.clusters.tolist()))
    after = run.assignments
    how = after.how_per_image()
    attached = [i for i, h in enumerate(how) if h == "attached"]
    assert attached, "some unclustered digits lean clearly towards a cluster"
    assert all(before[after.image_ids[i]] == -1 and after.clusters[i] >= 0 for i in attached)
    assert all(after.membership_probability[i] >= 0.3 for i in attached)
    assert run.record.as_info()["clustering"]["attached"] == len(attached)
    with open(run.outputs["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert sum(row["how"] == "attached" for row in rows) == len(attached)
    again = imgcluster.load_run(run.key, workspace=workspace)
    assert again.assignments.how_per_image() == how
