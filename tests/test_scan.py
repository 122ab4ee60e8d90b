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


def test_a_higher_min_side_applies_to_images_scanned_before(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_photos(folder, 3)
    photo(7, (40, 30)).save(folder / "small.jpg", "JPEG")
    with imgcluster.open_workspace(workspace=tmp_path / "ws") as ws:
        first = imgcluster.scan(folder, workspace=ws, config=imgcluster.ScanConfig(min_side=8))
        assert "small.jpg" in {Path(r.path).name for r in first.images}
        stricter = imgcluster.scan(folder, workspace=ws, config=imgcluster.ScanConfig(min_side=32))
        assert {Path(r.path).name: r.skip_reason for r in stricter.skipped}.keys() == {"small.jpg"}
        assert "too small: 40×30 px" in stricter.skipped[0].skip_reason
        again = imgcluster.scan(folder, workspace=ws, config=imgcluster.ScanConfig(min_side=8))
        assert "small.jpg" in {Path(r.path).name for r in again.images}  # and back when lowered


def test_a_named_pipe_is_skipped_as_not_a_file_without_being_opened(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "images"
    write_photos(folder, 2)
    os.mkfifo(folder / "pipe.jpg")  # opening it to read would wait for a writer forever
    with imgcluster.open_workspace(workspace=tmp_path / "ws") as ws:
        found = imgcluster.scan(folder, workspace=ws)
    [pipe] = found.skipped
    assert len(found.images) == 2 and "not a regular file but a named pipe" in pipe.skip_reason


def test_large_images_decode_one_at_a_time_within_the_budget_and_come_out_shrunk(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """Images just under the bomb limit are accepted, but decoding several at once must not add up:
    each reserves its decoded size, and a large one is shrunk before any conversion copies it."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    scan_module = sys.modules["imgcluster.scan"]  # the package's ``imgcluster.scan`` is the function

    paths = []
    for i in range(3):
        canvas = Image.new("RGB", (4800, 4200), (40, 90 + 40 * i, 160))
        canvas.paste((250, 200, 30), (0, 0, 1200, 600))  # a block in the top-left corner
        exif = Image.Exif()
        exif[0x0112] = 6 if i == 0 else 1  # the first is stored rotated: shown upright it is 4200 wide
        paths.append(tmp_path / f"large-{i}.png")
        canvas.save(paths[-1], exif=exif.tobytes(), compress_level=1)
    one_image = 4800 * 4200 * 4
    budget = scan_module.DecodeBudget(int(1.5 * one_image))
    monkeypatch.setattr(scan_module, "DECODE_BUDGET", budget)
    with ThreadPoolExecutor(3) as pool:
        decoded = list(pool.map(lambda p: load_rgb(p, min_side=224), paths))
    assert budget.peak <= int(1.5 * one_image) and budget.held == 0  # never two in flight, all released
    rotated, plain = decoded[0], decoded[1]
    assert plain.size == (1200, 1050) and plain.mode == "RGB"  # 4800x4200 reduced by 4: short side >= 4 x 224
    assert rotated.size == (1050, 1200)  # upright: the EXIF orientation survives the shrinking
    assert np.asarray(plain)[10, 10].tolist() == [250, 200, 30]
    assert np.asarray(rotated)[10, -10].tolist() == [250, 200, 30]  # the corner block turned with the picture


def test_links_out_of_the_folder_and_hidden_entries_are_reported_not_read(tmp_path: Path) -> None:
    """The scan policy: links inside the folder are read, links leading out of it are not (unless
    follow_symlinks), hidden files and folders are not; each entry not read is reported with why."""
    import os

    outside = tmp_path / "elsewhere"
    write_photos(outside, 2)
    (outside / "secret.txt").write_text("root:x:0:0\n")
    folder = tmp_path / "images"
    write_photos(folder, 2)
    os.symlink(folder / "photo-0000.jpg", folder / "inside-link.jpg")
    os.symlink(outside / "photo-0000.jpg", folder / "outside-link.jpg")
    os.symlink(outside / "secret.txt", folder / "passwd.jpg")
    os.symlink(outside, folder / "outside-folder")
    (folder / ".cache").mkdir()
    photo(9).save(folder / ".cache" / "thumb.jpg")
    photo(8).save(folder / ".hidden.jpg")
    with imgcluster.open_workspace(workspace=tmp_path / "ws") as ws:
        found = imgcluster.scan(folder, workspace=ws)
        reasons = {Path(r.path).name: r.skip_reason for r in found.skipped}
        assert sorted(Path(r.path).name for r in found.images) == ["inside-link.jpg", "photo-0000.jpg",
                                                                    "photo-0001.jpg"]
        assert set(reasons) == {"outside-link.jpg", "passwd.jpg", "outside-folder", ".cache", ".hidden.jpg"}
        assert all("outside the scanned folder" in reasons[n] and "--follow-links" in reasons[n]
                   for n in ("outside-link.jpg", "passwd.jpg", "outside-folder"))
        assert "hidden folder" in reasons[".cache"] and "hidden file" in reasons[".hidden.jpg"]
        assert all(r.content_hash is None for r in found.skipped)  # nothing refused was opened or hashed

        followed = imgcluster.scan(folder, workspace=ws, config=imgcluster.ScanConfig(follow_symlinks=True))
        names = {Path(r.path).name for r in followed.images}
        assert {"outside-link.jpg", "photo-0001.jpg"} <= names  # outside-folder/photo-0001.jpg too
        assert any("outside-folder" in r.path for r in followed.images)
        assert "passwd.jpg" in {Path(r.path).name for r in followed.skipped}  # followed, then not an image


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
