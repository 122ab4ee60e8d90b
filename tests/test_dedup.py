"""Duplicates: exact, perceptual (mirror-invariant), crops and embedding groups, geometric verification,
the keeper, exports with each pair's evidence, and cluster --dedup."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

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
    assert run.record.as_info()["clustering"]["dedup"]["duplicates"] == 1
    assert list(imgcluster.load_run(run.key, path=folder).record.config["dedup"]["detectors"]) == [
        "exact", "perceptual"]


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like picture: a colour gradient under 40 random outlined shapes (corners for local
    features), distinct per seed."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size[0])[None, :, None] * rng.uniform(60, 200, 3) + rng.uniform(0, 55, 3)
    image = Image.fromarray(np.broadcast_to(ramp, (size[1], size[0], 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(8, 60, 2))
        shape = draw.ellipse if rng.integers(2) else draw.rectangle
        shape((x, y, x + w, y + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3)), outline=(0, 0, 0))
    return image


def brick_wall(seed: int, size: tuple[int, int] = (640, 240)) -> Image.Image:
    """A texture photo: staggered bricks of slightly varied red, with sensor noise."""
    rng = np.random.default_rng(seed)
    wall = Image.new("RGB", size, (200, 200, 195))
    draw = ImageDraw.Draw(wall)
    for row in range(size[1] // 20 + 1):
        for column in range(-1, size[0] // 40 + 1):
            red = int(150 + rng.integers(-25, 25))
            x, y = column * 40 + (row % 2) * 20, row * 20
            draw.rectangle((x + 2, y + 2, x + 38, y + 18), fill=(red, int(red * 0.45), int(red * 0.35)))
    noisy = np.asarray(wall) + rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


CROP_AT = (13, 9)  # the 90% crop's top-left corner in the original


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """scene0 with a mirrored copy and a 90% crop (JPEG), three other scenes, and the two halves of
    one brick-wall photo."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    for seed in range(4):
        scene(seed).save(folder / f"scene{seed}.png")
    original = scene(0)
    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirrored.jpg", quality=90)
    left, top = CROP_AT
    original.crop((left, top, left + 288, top + 216)).save(folder / "cropped.jpg", quality=90)
    wall = brick_wall(7)
    wall.crop((0, 0, 320, 240)).save(folder / "wall-left.png")
    wall.crop((320, 0, 640, 240)).save(folder / "wall-right.png")
    return folder


def names_by_group(found: imgcluster.Duplicates) -> list[set[str]]:
    return [{Path(image.path).name for image in [g.keeper, *g.duplicates]} for g in found.groups]


def test_a_mirrored_copy_and_a_90_percent_crop_are_grouped_with_their_original(copies: Path) -> None:
    pytest.importorskip("cv2")
    export = copies.parent / "groups.json"
    result = subprocess.run([sys.executable, "-m", "imgcluster.cli", "duplicates", str(copies), "--export",
                             str(export), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(export.read_text())
    groups = [{Path(image["path"]).name for image in [g["keeper"], *g["duplicates"]]} for g in found["groups"]]
    assert groups == [{"scene0.png", "mirrored.jpg", "cropped.jpg"}]  # the wall's halves stay apart
    pairs = {frozenset((Path(p["first"]).name, Path(p["second"]).name)): p for p in found["pairs"]}
    mirror = pairs[frozenset(("scene0.png", "mirrored.jpg"))]
    assert mirror["detector"] == "perceptual" and mirror["hamming"] <= 2
    crop = next(p for names, p in pairs.items() if "cropped.jpg" in names)
    assert crop["detector"] == "crops" and crop["matches"] >= 15
    assert crop["transform"]["scale"] == pytest.approx(1, abs=0.05)
    cropped = next(d for g in found["groups"] for d in g["duplicates"] if d["path"].endswith("cropped.jpg"))
    if Path(cropped["linked_to"]).name == "scene0.png":  # the crop mapped onto the original: it sits at CROP_AT
        assert cropped["transform"]["mirrored"] is False
        assert cropped["transform"]["shift"] == pytest.approx(list(CROP_AT), abs=2)
    else:  # onto the mirrored copy: mirrored first, then its top-left lands at the mirror of CROP_AT's row
        assert cropped["transform"]["mirrored"] is True
        assert cropped["transform"]["shift"] == pytest.approx([320 - 288 - CROP_AT[0], CROP_AT[1]], abs=2)


def test_two_halves_of_one_texture_photo_are_not_joined(copies: Path) -> None:
    pytest.importorskip("cv2")
    found = imgcluster.duplicates(copies, embed_config=imgcluster.EmbedConfig(model="efficientnet-lite0"))
    assert not any({"wall-left.png", "wall-right.png"} & group for group in names_by_group(found))
    assert found.verified


def test_without_opencv_mirrors_are_still_found_and_the_log_says_what_to_install(
        copies: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("imgcluster.api.search.opencv_available", lambda: False)
    config = imgcluster.DedupConfig(detectors=("exact", "perceptual", "crops"))
    with caplog.at_level(logging.WARNING, logger="imgcluster"):
        found = imgcluster.duplicates(copies, config=config)
    assert names_by_group(found) == [{"scene0.png", "mirrored.jpg"}]  # the crop needs verification
    assert found.candidates["unverified"] >= 1 and not found.verified
    assert "imgcluster[dedup]" in caplog.text


def test_without_opencv_the_command_names_the_extra_to_install(copies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary line says what to install, in full: rich markup once swallowed "[dedup]"."""
    from typer.testing import CliRunner

    from imgcluster.cli import app

    monkeypatch.setattr("imgcluster.api.search.opencv_available", lambda: False)
    result = CliRunner().invoke(app, ["duplicates", str(copies), "--detectors", "exact,perceptual,crops"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "not verified: OpenCV is missing (pip install 'imgcluster[dedup]')" in result.output
