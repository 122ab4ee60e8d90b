"""Tiny and degenerate collections still give a run, never a crash."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import imgcluster

from .conftest import photo, write_photos


def test_one_image(tmp_path: Path) -> None:
    photo(0).save(tmp_path / "only.jpg")
    run = imgcluster.cluster(tmp_path, model="efficientnet-lite0")
    assert run.record.n_images == 1
    assert run.assignments.clusters.tolist() == [-1]  # one image is no cluster
    assert run.outputs["report"].exists()


def test_identical_images_are_embedded_once_and_clustered_together(tmp_path: Path) -> None:
    write_photos(tmp_path / "a", 10)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    run = imgcluster.cluster(tmp_path, model="efficientnet-lite0", k=4)
    assert run.record.as_info()["embedding"]["new"] == 10
    assert run.record.n_images == 20
    by_name: dict[str, set[int]] = {}
    for record, cluster in zip(run.images, run.assignments.clusters.tolist()):
        by_name.setdefault(Path(record.path).name, set()).add(cluster)
    assert all(len(clusters) == 1 for clusters in by_name.values())


def test_k_larger_than_the_collection_is_capped(tmp_path: Path) -> None:
    write_photos(tmp_path, 4)
    run = imgcluster.cluster(tmp_path, model="efficientnet-lite0", k=50)
    assert run.record.n_clusters == 4
    assert run.record.config["cluster"]["k"] == 4


def test_small_collection_with_hdbscan_defaults(tmp_path: Path) -> None:
    write_photos(tmp_path, 12)
    run = imgcluster.cluster(tmp_path, model="efficientnet-lite0")
    assert run.record.config["cluster"]["min_cluster_size"] <= 4  # never 1000 on 12 images
    assert len(run.assignments.clusters) == 12


def test_second_writer_is_told_the_workspace_is_busy(photos: Path, tmp_path: Path) -> None:
    holder = imgcluster.open_workspace(workspace=tmp_path / "ws")
    holder.lock()
    try:
        with pytest.raises(imgcluster.WorkspaceBusy, match="Wait for it to finish"):
            imgcluster.cluster(photos, workspace=tmp_path / "ws", model="efficientnet-lite0", k=2)
    finally:
        holder.close()
    run = imgcluster.cluster(photos, workspace=tmp_path / "ws", model="efficientnet-lite0", k=2)
    assert run.record.n_images == 24


def test_same_seed_gives_the_same_clusters(photos: Path, tmp_path: Path) -> None:
    first = imgcluster.cluster(photos, workspace=tmp_path / "one", model="efficientnet-lite0")
    second = imgcluster.cluster(photos, workspace=tmp_path / "two", model="efficientnet-lite0")
    assert np.array_equal(first.assignments.clusters, second.assignments.clusters)
    assert np.allclose(first.assignments.x, second.assignments.x, atol=1e-3)
