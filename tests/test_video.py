"""Videos: found by content, decoded once into key-frames (a few per shot, each with its time), damaged
videos keep what came before the damage, and frames cluster with the images."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcluster
from imgcluster.config import ScanConfig
from imgcluster.video import KeyFrameExtractor

from .conftest import write_photos

av = pytest.importorskip("av")

# Three scenes a viewer would never confuse: the colour each shot is filled with.
SCENES = ((200, 40, 40), (40, 170, 60), (40, 60, 210))
FPS = 30


def scene(shot: int, frame: int, width: int = 160, height: int = 96) -> np.ndarray:
    """A frame of ``shot``: its colour, a slow gradient, and a white bar that moves to and fro every frame."""
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:] = SCENES[shot % len(SCENES)]
    pixels *= np.linspace(0.7, 1.0, width)[None, :, None]
    travel = width - 12
    left = abs((frame * 2) % (2 * travel) - travel)
    pixels[:, left:left + 12] = 255
    return pixels.astype(np.uint8)


def write_video(path: Path, shot_seconds: tuple[float, ...] = (1.5, 1.5, 1.5), **options: str) -> list[float]:
    """Encode shots of SCENES (H.264 at 30 fps, in the container ``path``'s name asks for, whatever its
    extension says: ``format``), returning the time in seconds each shot starts."""
    container = av.open(str(path), "w", format=options.pop("format", None), options=options)
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
    starts, index = [], 0
    for shot, seconds in enumerate(shot_seconds):
        starts.append(index / FPS)
        for _ in range(round(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(scene(shot, index), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            index += 1
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return starts


def shot_of(pixels: Image.Image) -> int:
    """Which SCENE a decoded frame shows (the nearest colour, measured away from the moving bar)."""
    mean = np.asarray(pixels.convert("RGB"), dtype=np.float32).reshape(-1, 3)
    mean = mean[mean.sum(axis=1) < 600].mean(axis=0)  # leave out the white bar
    return int(np.argmin([np.abs(mean - np.asarray(c) * 0.85).sum() for c in SCENES]))


def test_a_three_shot_video_gives_keyframes_from_each_shot_with_their_times(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    starts = write_video(folder / "holiday.bin", format="mp4")  # found by its content, not its name
    ws = imgcluster.open_workspace(folder)
    found = imgcluster.scan(folder, workspace=ws)

    video = str(folder / "holiday.bin")
    assert [v.path for v in found.videos] == [video] and found.videos[0].format == "MP4"
    assert not found.skipped
    frames = found.images
    assert {f.shot for f in frames} == {0, 1, 2}
    ends = starts[1:] + [4.5]
    for frame in frames:
        assert frame.source_path == video and frame.path == f"{video}#t={frame.timestamp:.3f}"
        assert starts[frame.shot] <= frame.timestamp < ends[frame.shot]
        # The stored pixels are that shot's picture, so a frame is what its time says it is.
        assert shot_of(Image.open(io.BytesIO(ws.frame_jpeg(frame.content_hash)))) == frame.shot
    assert len(frames) <= 3 * 2  # 1.5 s shots get one key-frame per part of at least a second
    ws.close()


def test_a_truncated_video_keeps_the_frames_before_the_damage_and_records_the_error(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    starts = write_video(folder / "long.mkv", (2.0, 2.0, 2.0))
    data = (folder / "long.mkv").read_bytes()
    (folder / "long.mkv").write_bytes(data[:int(len(data) * 0.5)])
    write_video(folder / "cut.mp4")  # an MP4 keeps its index at the end: cut short, nothing is readable
    (folder / "cut.mp4").write_bytes((folder / "cut.mp4").read_bytes()[:3000])
    ws = imgcluster.open_workspace(folder)
    found = imgcluster.scan(folder, workspace=ws)

    kept = [f for f in found.images if f.source_path == str(folder / "long.mkv")]
    damaged = [s for s in found.skipped if s.source_path == str(folder / "long.mkv")]
    assert len(damaged) == 1 and "truncated or damaged" in damaged[0].skip_reason
    assert damaged[0].skip_stage == "video"
    assert 0 in {f.shot for f in kept} and starts[0] == 0.0
    assert all(f.timestamp < damaged[0].timestamp < starts[2] + 2.0 for f in kept)
    assert "truncated or damaged" in found.videos[0].skip_reason  # noted on the video's own row
    unreadable = [s for s in found.skipped if s.path == str(folder / "cut.mp4")]
    assert unreadable and unreadable[0].skip_reason.startswith("no frame could be decoded")
    ws.close()


def test_a_video_is_decoded_again_only_when_it_or_the_video_settings_changed(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "a.mp4")
    ws = imgcluster.open_workspace(folder)
    first = imgcluster.scan(folder, workspace=ws)
    calls: list[str] = []
    original = KeyFrameExtractor.extract
    monkeypatch.setattr(KeyFrameExtractor, "extract", lambda self, path: calls.append(str(path)) or original(self, path))

    again = imgcluster.scan(folder, workspace=ws)
    assert calls == [] and again.n_new == 0
    assert [f.path for f in again.images] == [f.path for f in first.images]

    imgcluster.scan(folder, workspace=ws, config=ScanConfig(video_frames_per_shot=1))
    assert calls == [str(folder / "a.mp4")]
    write_video(folder / "a.mp4", (1.5, 1.5))  # replaced by a two-shot video
    changed = imgcluster.scan(folder, workspace=ws)
    assert len(calls) == 2 and {f.shot for f in changed.images} == {0, 1}
    gone = {r.path: r.status for r in ws.images([f.path for f in first.images])}
    assert all(gone[f.path] == "missing" for f in first.images if f.path not in {g.path for g in changed.images})
    ws.close()


def test_without_pyav_a_video_is_skipped_with_the_install_command(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write_video(tmp_path / "a.webm", format="matroska")
    monkeypatch.setattr(sys.modules["imgcluster.scan"], "decoder_available", lambda: False)
    ws = imgcluster.open_workspace(tmp_path)
    found = imgcluster.scan(tmp_path, workspace=ws)
    assert not found.images and len(found.skipped) == 1
    assert "pip install 'imgcluster[video]'" in found.skipped[0].skip_reason
    monkeypatch.undo()  # installed later: the next scan picks the video up
    assert {f.shot for f in imgcluster.scan(tmp_path, workspace=ws).images} == {0, 1, 2}
    ws.close()


def test_a_mixed_folder_clusters_end_to_end_and_the_report_shows_frames_with_their_video_and_time(
        tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_photos(folder / "photos", 16)
    write_video(folder / "trip.mov", (2.5, 2.5, 2.5))
    result = subprocess.run([sys.executable, "-m", "imgcluster.cli", "cluster", str(folder), "--model",
                             "efficientnet-lite0", "--k", "4", "--namer", "none", "--reduce", "pca", "--map", "pca",
                             "--json"],  # PCA: the frames' way through matters here, not UMAP's (15 s on 2 cores)
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    run = imgcluster.load_run(data["run"], path=folder)
    frames = [r for r in run.images if r.source_path is not None]
    assert len(run.images) == 16 + len(frames) and {f.shot for f in frames} == {0, 1, 2}
    html = Path(data["outputs"]["report"]).read_text()
    for frame in frames:  # named by video and time, and a caption opens the video there
        seconds = int(frame.timestamp)
        assert f"frame of trip.mov at 00:{seconds:02d}" in html
        assert f"{(folder / 'trip.mov').as_uri()}#t={frame.timestamp:.3f}" in html
    csv = (Path(data["outputs"]["report"]).parent / "clusters.csv").read_text()
    assert f"trip.mov#t={frames[0].timestamp:.3f}" in csv
    exported = imgcluster.export(tmp_path / "by-cluster", data["run"], path=folder)  # frames are not files
    written = list((tmp_path / "by-cluster").rglob("trip.mov-t*.jpg"))
    assert exported.missing == 0 and len(written) == len(frames)
    assert shot_of(Image.open(next(w for w in written if f"-t{frames[0].timestamp:.3f}" in w.name))) == frames[0].shot


def test_the_web_app_names_a_frame_by_its_video_and_time_and_serves_its_pixels(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from imgcluster.web.app import create_app

    folder = tmp_path / "mixed"
    write_photos(folder, 8)
    write_video(folder / "trip.mkv", (2.0, 2.0))
    run = imgcluster.cluster(folder, model="efficientnet-lite0", k=2, namer="none", config=imgcluster.RunConfig(
        reduce=imgcluster.ReduceConfig(method="pca", map_method="pca")))
    frame = next(r for r in run.images if r.source_path is not None)
    with TestClient(create_app(run.workspace)) as client:
        shown = client.get(f"/api/images/{frame.id}").json()
        assert shown["name"] == f"frame of trip.mkv at 00:0{int(frame.timestamp)}"
        assert shown["video"] == str(folder / "trip.mkv") and shown["timestamp"] == frame.timestamp
        pixels = client.get(f"/api/images/{frame.id}/file")
    assert pixels.status_code == 200 and pixels.headers["content-type"] == "image/jpeg"
    assert shot_of(Image.open(io.BytesIO(pixels.content))) == frame.shot
