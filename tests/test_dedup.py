"""Duplicates: exact, perceptual and embedding groups, the keeper, exports, and cluster --dedup."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import imgcluster
from imgcluster.dedup import DuplicateFinder


def picture(seed: int) -> Image.Image:
    """A smooth picture (random 5x4 colours, bicubic to 160x128): distinct per seed, stable hashes."""
    cells = np.random.default_rng(seed).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    return Image.fromarray(cells, "RGB").resize((160, 128), Image.Resampling.BICUBIC)


def test_duplicates_cli_groups_copies_and_suggests_the_largest_keeper(tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for seed in range(6):
        picture(seed).save(folder / f"p{seed}.png")
    shutil.copy(folder / "p0.png", folder / "same-bytes.png")
    picture(1).resize((80, 64), Image.Resampling.LANCZOS).save(folder / "smaller.jpg", quality=70)
    export = tmp_path / "groups.csv"
    result = subprocess.run([sys.executable, "-m", "imgcluster.cli", "duplicates", str(folder), "--detectors",
                             "exact,perceptual", "--export", str(export), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)["groups"]
    by_keeper = {Path(g["keeper"]["path"]).name: [(Path(d["path"]).name, d["how"]) for d in g["duplicates"]]
                 for g in groups}
    assert by_keeper == {"p0.png": [("same-bytes.png", "exact")], "p1.png": [("smaller.jpg", "perceptual")]}
    with open(export) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["keeper"] for r in rows if r["path"].endswith("p1.png")} == {"True"}
    assert sum(p.is_file() for p in folder.iterdir()) == 8  # nothing deleted


def test_embedding_groups_are_stars_around_the_keeper_not_chains() -> None:
    # a-b and b-c are similar (cos 0.98), a-c is not (0.92): b joins a, c stays alone.
    angle = np.arccos(0.98)
    vectors = np.array([[1, 0], [np.cos(angle), np.sin(angle)], [np.cos(2 * angle), np.sin(2 * angle)]],
                       dtype=np.float32)
    finder = DuplicateFinder(detectors=("embedding",), similarity=0.95).fit(
        ["a", "b", "c"], vectors=vectors, pixels=np.array([100, 50, 50]))
    assert finder.group_.tolist() == [0, 0, -1] and finder.keeper_.tolist() == [True, False, False]
    assert finder.how_[1] == "embedding" and abs(finder.similarity_[1] - 0.98) < 1e-5


def test_keeper_is_the_largest_then_the_first_seen() -> None:
    finder = DuplicateFinder(detectors=("exact",)).fit(["h", "h", "h"], pixels=np.array([10, 40, 40]),
                                                       seen=np.array([0, 2, 1]))
    assert finder.keeper_.tolist() == [False, False, True]
    assert finder.how_.tolist() == ["exact", "exact", "keeper"]


def test_cluster_dedup_places_duplicates_with_their_keeper(tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for seed in range(8):
        picture(seed).save(folder / f"p{seed}.png")
    shutil.copy(folder / "p3.png", folder / "copy.png")
    config = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(method="pca", map_method="pca"),
                                  cluster=imgcluster.ClusterConfig(k=3),
                                  dedup=imgcluster.DedupConfig(detectors=("exact", "perceptual")))
    run = imgcluster.cluster(folder, model="efficientnet-lite0", namer="none", config=config)
    how = dict(zip([Path(r.path).name for r in run.images], run.assignments.how_per_image()))
    cluster = dict(zip([Path(r.path).name for r in run.images], run.assignments.clusters.tolist()))
    assert sorted([how["copy.png"], how["p3.png"]]) == ["duplicate", "fit"]  # the same size: first seen keeps
    assert cluster["copy.png"] == cluster["p3.png"]
    assert run.record.info["clustering"]["dedup"]["duplicates"] == 1
    assert list(imgcluster.load_run(run.key, path=folder).record.config["dedup"]["detectors"]) == [
        "exact", "perceptual"]
