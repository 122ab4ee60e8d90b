"""Scanning: images found by content, every mode decoded to RGB, bad files skipped with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcluster
from imgcluster.scan import load_rgb, to_rgb

from .conftest import jpeg_bytes, photo, write_photos


def make_bad_files(folder: Path) -> dict[str, str]:
    """The issue's bad-file set; returns file name → a word its skip reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    whole = jpeg_bytes(photo(1, (300, 200)))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.jpg").write_text("shopping list: eggs, milk\n" * 20)
    Image.new("RGB", (1, 1), "red").save(folder / "pixel.png")
    return {"empty.jpg": "empty", "truncated.jpg": "truncated", "notes.jpg": "not an image",
            "pixel.png": "too small"}


def make_odd_but_valid_files(folder: Path) -> list[str]:
    """Images in awkward modes that must be embedded, not skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    gradient = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(gradient).save(folder / "sixteen-bit.png")
    photo(2).convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    rgba = photo(3).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "transparent.png")
    photo(4).convert("P").save(folder / "palette.gif")
    photo(5).save(folder / "really-a-png.jpg", "PNG")  # mis-named, good content
    return ["sixteen-bit.png", "cmyk.jpg", "transparent.png", "palette.gif", "really-a-png.jpg"]


def test_bad_files_are_skipped_with_reasons_and_the_run_succeeds(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_photos(folder, 12)
    expected = make_bad_files(folder)
    valid = make_odd_but_valid_files(folder)
    run = imgcluster.cluster(folder, model="efficientnet-lite0", k=3)
    skipped = {Path(r.path).name: r.skip_reason for r in run.skipped}
    assert set(skipped) == set(expected)
    for name, word in expected.items():
        assert word in skipped[name], (name, skipped[name])
    clustered = {Path(r.path).name for r in run.images}
    assert set(valid) <= clustered
    assert len(clustered) == 12 + len(valid)
    assert "truncated.jpg" in run.outputs["report"].read_text()  # listed in the report


def test_sixteen_bit_images_keep_their_tones() -> None:
    gradient = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(gradient)))
    assert rgb.shape == (48, 64, 3)
    assert rgb[0, 0, 0] < 10 and rgb[-1, -1, 0] > 245  # not clipped to white
    assert len(np.unique(rgb[..., 0])) > 200


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (80, 40), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rotated.jpg").size == (40, 80)


def test_transparency_is_flattened_onto_white() -> None:
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert np.asarray(to_rgb(clear)).min() == 255


def test_gif_first_frame_is_used(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    red, green, blue = load_rgb(tmp_path / "anim.gif").getpixel((5, 5))
    assert red > 200 and blue < 50


def test_unchanged_files_are_not_read_again(photos: Path, tmp_path: Path) -> None:
    ws = imgcluster.open_workspace(workspace=tmp_path / "ws")
    first = imgcluster.scan(photos, workspace=ws)
    assert first.n_new == 24 and len(first.images) == 24
    second = imgcluster.scan(photos, workspace=ws)
    assert second.n_new == 0 and len(second.images) == 24
    (photos / "photo-0000.jpg").unlink()
    photo(99).save(photos / "photo-0001.jpg")
    third = imgcluster.scan(photos, workspace=ws)
    assert third.n_new == 1 and len(third.images) == 23
    assert ws.images(status="missing")[0].path.endswith("photo-0000.jpg")


def test_workspace_folder_is_not_scanned_as_images(photos: Path) -> None:
    imgcluster.cluster(photos, model="efficientnet-lite0", k=2)  # writes photos/.imgcluster/
    ws = imgcluster.open_workspace(photos)
    found = imgcluster.scan(photos, workspace=ws)
    assert all(".imgcluster" not in r.path for r in found.images + found.skipped)


def test_a_folder_without_images_says_so(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(imgcluster.NoImages, match="None of the 1 files"):
        imgcluster.cluster(tmp_path, model="efficientnet-lite0")
    with pytest.raises(imgcluster.NoImages, match="does not exist"):
        imgcluster.cluster(tmp_path / "nowhere", model="efficientnet-lite0")


def test_a_folder_whose_images_all_fail_to_decode_says_why(tmp_path: Path) -> None:
    whole = jpeg_bytes(photo(1, (300, 200)))
    (tmp_path / "half.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(imgcluster.NoImages, match="half.jpg: truncated"):
        imgcluster.cluster(tmp_path, model="efficientnet-lite0")


def test_the_order_the_file_system_lists_a_folder_in_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    """File systems list folders in their own order (ext4 by name hash, others by creation): the
    catalogue's ids, and so every seeded result downstream, must not follow it."""
    import importlib
    import os

    for number, folder in enumerate(["b", "a", "c/deeper", "c"]):
        write_photos(tmp_path / "images" / folder, 3, start=3 * number)
    listed_as_is = imgcluster.scan(tmp_path / "images", workspace=imgcluster.open_workspace(workspace=tmp_path / "one"))

    walk = os.walk

    def reversed_walk(*args, **kwargs):
        for folder, dirs, files in walk(*args, **kwargs):
            dirs.reverse()  # in place: os.walk descends into this very list
            files.reverse()
            yield folder, dirs, files

    # `imgcluster.scan` is also the one-call function, so reach the module through importlib.
    monkeypatch.setattr(importlib.import_module("imgcluster.scan").os, "walk", reversed_walk)
    listed_reversed = imgcluster.scan(tmp_path / "images",
                                      workspace=imgcluster.open_workspace(workspace=tmp_path / "two"))
    assert len(listed_as_is.images) == 12
    assert [(r.path, r.id) for r in listed_reversed.images] == [(r.path, r.id) for r in listed_as_is.images]
