"""SIGKILL at random points loses nothing: bench/crash.py's loops with 3 kills on 60 images.

The full claim (20 kills) is ``python bench/crash.py``; here each loop runs the same code, fewer times."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import imgcluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import crash

N_IMAGES = 60


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[crash.Kill]]:
    root = tmp_path_factory.mktemp("crash")
    folder, workspace = root / "images", root / "workspace"
    crash.write_images(folder, N_IMAGES)
    kills = crash.kill_embedding(folder, workspace, 3, np.random.default_rng(12), start_delay=3.0)
    return folder, workspace, kills


def test_embedding_killed_three_times_ends_with_each_image_embedded_once(
        killed_and_resumed: tuple[Path, Path, list[crash.Kill]], tmp_path: Path) -> None:
    folder, workspace, kills = killed_and_resumed
    # At least the kills timed after a commit land mid-embedding, with work both before and after.
    assert any(k.killed and 0 < k.at_kill < N_IMAGES for k in kills), [k.line() for k in kills]
    result = crash.check_embeddings(folder, workspace, tmp_path / "reference")
    assert result.integrity_ok
    assert (result.images, result.embedded, result.duplicates, result.missing) == (N_IMAGES, N_IMAGES, 0, 0)
    assert result.max_difference <= 1e-5  # the same vectors as an uninterrupted run


def test_clustering_killed_keeps_the_previous_run_and_shows_no_half_run(
        killed_and_resumed: tuple[Path, Path, list[crash.Kill]]) -> None:
    folder, workspace, _ = killed_and_resumed
    fast = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(method="pca", map_method="pca"))
    before = imgcluster.cluster(folder, workspace=workspace, model=crash.MODEL, method="kmeans", k=4,
                                namer="none", run_key="before", config=fast)
    # Odd kills at a random moment after start, even ones once the run's files are being written;
    # kill_clustering checks after each that `runs list` and load_run show only "before", unchanged.
    points = crash.kill_clustering(folder, workspace, 2, np.random.default_rng(3), start_delay=4.0)
    assert len(points) == 2 and "writing" in points[1][0] and points[1][1] != "nothing", points
    assert not any("finished first every time" in point for point, _ in points), points  # each kill landed
    leftover = workspace / "runs" / "crash" / "from-the-killed-run.txt"
    leftover.parent.mkdir(parents=True, exist_ok=True)  # gone if the last kill came after a whole run
    leftover.write_text("an orphan run folder must not break `runs list` or the rerun")
    assert [r.key for r in imgcluster.list_runs(workspace=workspace)] == ["before"]
    rerun = crash.rerun_cluster(folder, workspace)
    assert not leftover.exists()  # the rerun starts its folder afresh
    assert rerun.record.n_images == N_IMAGES and set(rerun.outputs) == {"csv", "parquet", "report"}
    assert sorted(r.key for r in imgcluster.list_runs(workspace=workspace)) == ["before", "crash"]
    assert np.array_equal(imgcluster.load_run("before", workspace=workspace).assignments.clusters,
                          before.assignments.clusters)
