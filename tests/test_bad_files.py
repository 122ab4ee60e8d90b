"""The bad-file corpus: every messy file a real folder holds is embedded correctly or skipped with a
clear reason, and the run finishes. Random byte damage (Hypothesis) never crashes the decoder."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import imgcluster
from imgcluster.scan import load_rgb

from .conftest import jpeg_bytes, photo, write_photos


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def declared_size_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height``: a decompression bomb's calling card."""
    data = bytearray(png_bytes(Image.new("L", (1, 1))))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def exif_with_orientation(value: int) -> bytes:
    image = photo(7)
    exif = image.getexif()
    exif[0x0112] = value
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def animated(fmt: str) -> bytes:
    frames = [photo(seed) for seed in (8, 9, 10)]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def write_corpus(folder: Path) -> tuple[dict[str, str], set[str]]:
    """Writes the corpus; returns (file name -> a word its skip reason must contain, names that must be
    embedded). Files in neither may go either way, as long as a skip says why."""
    folder.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    embedded: set[str] = set()

    def put(name: str, data: bytes, outcome: str | None = None) -> None:
        (folder / name).write_bytes(data)
        if outcome == "embedded":
            embedded.add(name)
        elif outcome is not None:
            skipped[name] = outcome

    whole_jpeg, whole_png = jpeg_bytes(photo(1, (300, 200))), png_bytes(photo(2, (300, 200)))
    put("zero-byte.jpg", b"", "empty")
    for share in (0.1, 0.5, 0.9):
        put(f"truncated-{int(share * 100)}.jpg", whole_jpeg[: int(len(whole_jpeg) * share)], "truncated")
        put(f"truncated-{int(share * 100)}.png", whole_png[: int(len(whole_png) * share)])
    put("png-named.jpg", whole_png, "embedded")
    put("jpeg-named.png", whole_jpeg, "embedded")
    put("notes.jpg", b"shopping list: eggs, milk\n" * 40, "not an image")
    put("page.jpg", b"<!DOCTYPE html><html><body><img src='x.jpg'></body></html>\n" * 10, "not an image")
    put("paper.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n" * 10, "not an image")
    put("bomb.png", declared_size_png(60_000, 60_000), "decompression bomb")
    put("one-pixel.png", png_bytes(Image.new("RGB", (1, 1), "red")), "too small")
    put("thin-strip.png", png_bytes(Image.new("RGB", (30_000, 10), "blue")))
    gradient = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    put("sixteen-bit.png", png_bytes(Image.fromarray(gradient)), "embedded")
    cmyk = io.BytesIO()
    photo(3).convert("CMYK").save(cmyk, "JPEG")
    put("cmyk.jpg", cmyk.getvalue(), "embedded")
    palette = photo(4).convert("P")
    palette.info["transparency"] = 0
    transparent = io.BytesIO()
    palette.save(transparent, "PNG", transparency=0)
    put("palette-transparent.png", transparent.getvalue(), "embedded")
    put("animated.gif", animated("GIF"), "embedded")
    put("animated.webp", animated("WEBP"), "embedded")
    put("orientation-9.jpg", exif_with_orientation(9), "embedded")
    put("orientation-0.jpg", exif_with_orientation(0), "embedded")
    # A name that is not UTF-8 (Linux allows any bytes but '/' and NUL).
    os.close(os.open(os.fsencode(folder) + b"/caf\xe9-latin1.jpg", os.O_WRONLY | os.O_CREAT, 0o644))
    with open(os.fsencode(folder) + b"/caf\xe9-latin1.jpg", "wb") as handle:
        handle.write(jpeg_bytes(photo(11)))
    skipped["caf\\xe9-latin1.jpg"] = "not valid UTF-8"  # kept under a printable form of its name
    # A symlink loop and a link to nothing.
    (folder / "loop").mkdir()
    (folder / "loop" / "again").symlink_to(folder, target_is_directory=True)
    (folder / "gone.jpg").symlink_to(folder / "never-existed.jpg")
    return skipped, embedded


def test_every_corpus_file_is_embedded_or_skipped_with_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "messy"
    write_photos(folder, 8)
    must_skip, must_embed = write_corpus(folder)
    run = imgcluster.cluster(folder, model="efficientnet-lite0", namer="none", k=3,
                             config=imgcluster.RunConfig(scan=imgcluster.ScanConfig(follow_symlinks=True)))
    skipped = {Path(r.path).name: r.skip_reason or "" for r in run.skipped}
    clustered = {Path(r.path).name for r in run.images}
    for name, word in must_skip.items():
        assert name in skipped, f"{name} should be skipped, not {'clustered' if name in clustered else 'lost'}"
        assert word in skipped[name], (name, skipped[name])
    assert must_embed <= clustered, must_embed - clustered
    corpus = {os.fsencode(p.name).decode("utf-8", "backslashreplace") for p in folder.iterdir()
              if p.is_file() or p.is_symlink()} - {"loop"}
    accounted = set(skipped) | clustered
    assert corpus - {"gone.jpg"} <= accounted, corpus - accounted  # nothing silently dropped
    assert all(reason.strip() for reason in skipped.values())
    assert len([p for p in clustered if p.startswith("photo")]) == 8  # the loop did not repeat them
    report = run.outputs["report"].read_text()
    assert "truncated-50.jpg" in report and "bomb.png" in report


VALID = [jpeg_bytes(photo(20, (64, 48))), png_bytes(photo(21, (64, 48)))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([0, 1]), edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0.05, 1.0)))
def test_damaged_bytes_decode_to_rgb_or_raise_a_clear_error(tmp_path: Path, which: int,
                                                            edits: list[tuple[float, int]],
                                                            cut: float | None) -> None:
    data = bytearray(VALID[which])
    for where, value in edits:
        data[min(len(data) - 1, int(where * len(data)))] = value
    if cut is not None:
        data = data[: max(1, int(cut * len(data)))]
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(data))
    try:
        image = load_rgb(str(path))
    except Exception as error:  # the scan turns these into skip reasons: they must say something
        assert isinstance(error, (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)), \
            type(error)
        assert str(error).strip()
        return
    assert image.mode == "RGB" and image.size[0] > 0 and image.size[1] > 0


def test_damaged_files_never_stop_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    write_photos(folder, 6)
    rng = np.random.default_rng(0)
    for i in range(24):
        data = bytearray(VALID[i % 2])
        for _ in range(1 + i % 5):
            data[rng.integers(0, len(data))] = rng.integers(0, 256)
        if i % 3 == 0:
            data = data[: rng.integers(1, len(data))]
        (folder / f"damaged-{i:02d}{'.jpg' if i % 2 == 0 else '.png'}").write_bytes(bytes(data))
    run = imgcluster.cluster(folder, model="efficientnet-lite0", namer="none", k=2)
    names = {Path(r.path).name for r in run.images} | {Path(r.path).name for r in run.skipped}
    assert len(names) == 30 and all(r.skip_reason for r in run.skipped)
    assert {f"photo-{i:04d}.jpg" for i in range(6)} <= {Path(r.path).name for r in run.images}


def test_unreadable_and_vanishing_files_are_skipped_with_the_os_reason(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    scan_module = importlib.import_module("imgcluster.scan")  # `imgcluster.scan` is also the function

    folder = tmp_path / "shifting"
    paths = write_photos(folder, 6)
    locked, vanishing, late = paths[0], paths[1], paths[2]
    real_hash = scan_module.hash_file

    def hash_file(path: str) -> str:
        if path == str(locked):  # as chmod 000 does for a normal user (this suite may run as root)
            raise PermissionError(13, "Permission denied", path)
        if path == str(vanishing):  # deleted between the folder listing and the read
            os.remove(path)
        return real_hash(path)

    monkeypatch.setattr(scan_module, "hash_file", hash_file)
    ws = imgcluster.open_workspace(workspace=tmp_path / "ws")
    try:
        found = imgcluster.scan(folder, workspace=ws)
        reasons = {Path(r.path).name: r.skip_reason for r in found.skipped}
        assert "Permission denied" in reasons[locked.name]
        assert "No such file" in reasons[vanishing.name]
        late.unlink()  # gone after the scan, before embedding: skipped there, the rest embedded
        embedded = imgcluster.embed(found, workspace=ws, config=imgcluster.EmbedConfig(model="efficientnet-lite0"))
        assert {Path(r.path).name for r in embedded.images} == {p.name for p in paths[3:]}
        assert len(embedded.report.undecodable) == 1
    finally:
        ws.close()
