"""How well does key-frame extraction find shots, how much does it keep, and how fast is it?

Videos the bench makes itself, so every cut is known: each shot films a region of one of the real
photographs that ship in packages (scikit-image's and scikit-learn's sample photos) at 30 fps, for
2-6 s, with one kind of camera work:

    static   a fixed view, sensor noise only
    pan      the view slides over the photo (a quarter to a half of its width in the shot)
    zoom     the view narrows or widens by a third
    shake    a handheld view: a few pixels of jitter every frame, slow drift
    fade     the light drifts by a quarter over the shot

Consecutive shots are hard cuts (no transitions); one in three films another region of the same
photo as the shot before it (same palette: the hard case for a colour histogram), overlapping the
view it cuts from by at most a quarter (more would be the same scene). Frames get
Gaussian noise (sigma 3) and are encoded with H.264 (libx264, CRF 23) in MP4.

Shot boundaries: a detected cut matches a true one at most one frame away (each at most once);
precision, recall and F1 over all clips. Reduction: 1 - key-frames kept / frames decoded. Speed:
frames/s of the whole pass (decode, compare, pick key-frames) against decoding alone, in this process.
Two long takes (two minutes, static and panning) show the frames-per-minute cap. Cut detection
was tuned on seeds 5, 7 and 11; the default seed 0 is held out.

    python bench/video.py [--clips 8] [--seconds 40] [--size 480x270] [--seed 0] [--cut-threshold T]
                          [--take-seconds 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from imgcluster.config import ScanConfig
from imgcluster.demo import sample_photos
from imgcluster.video import KeyFrameExtractor

FPS = 30
MOTIONS = ("static", "pan", "zoom", "shake", "fade")


def plan_shots(photos: dict[str, Image.Image], seconds: float, size: tuple[int, int],
               rng: np.random.Generator) -> list[dict]:
    """Shots of 2-6 s filling ``seconds``: photo, motion and view (as fractions of the photo)."""
    names = sorted(photos)
    shots: list[dict] = []
    total = 0
    while total < seconds * FPS:
        frames = int(rng.integers(2 * FPS, 6 * FPS + 1))
        same_photo = bool(shots) and rng.random() < 1 / 3
        for _ in range(100):
            photo = shots[-1]["photo"] if same_photo else names[int(rng.integers(len(names)))]
            shot = {"photo": photo, "frames": frames, "motion": MOTIONS[int(rng.integers(len(MOTIONS)))],
                    "scale": float(rng.uniform(0.35, 0.6)), "x": float(rng.uniform(0, 1)),
                    "y": float(rng.uniform(0, 1)), "direction": float(rng.choice([-1.0, 1.0])),
                    "travel": float(rng.uniform(0.25, 0.5))}
            if not same_photo or overlap(view(photos[photo].size, shots[-1], shots[-1]["frames"] - 1, size),
                                         view(photos[photo].size, shot, 0, size)) <= 0.25:
                break
        else:
            same_photo = False
            continue
        shots.append(shot)
        total += frames
    return shots


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The share of box ``a`` (left, top, right, bottom) that box ``b`` covers."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return width * height / ((a[2] - a[0]) * (a[3] - a[1]))


def view(photo_size: tuple[int, int], shot: dict, i: int, size: tuple[int, int],
         rng: np.random.Generator | None = None) -> tuple[float, float, float, float]:
    """The box of the photo that frame ``i`` of a shot shows (``rng``: the shake's jitter)."""
    width, height = size
    pw, ph = photo_size
    progress = i / max(1, shot["frames"] - 1)
    view_w = shot["scale"] * pw
    if shot["motion"] == "zoom":
        view_w *= 1 + shot["direction"] * (progress - 0.5) / 3
    view_h = view_w * height / width
    if view_h > ph:
        view_h, view_w = ph * 0.95, ph * 0.95 * width / height
    cx = shot["x"] * (pw - view_w) + view_w / 2
    cy = shot["y"] * (ph - view_h) + view_h / 2
    if shot["motion"] == "pan":
        cx += shot["direction"] * (progress - 0.5) * shot["travel"] * pw
    elif shot["motion"] == "shake":
        cx += 20 * progress + (rng.normal(0, 2) if rng is not None else 0.0)
        cy += rng.normal(0, 2) if rng is not None else 0.0
    cx = min(max(cx, view_w / 2), pw - view_w / 2)
    cy = min(max(cy, view_h / 2), ph - view_h / 2)
    return cx - view_w / 2, cy - view_h / 2, cx + view_w / 2, cy + view_h / 2


def render(photo: Image.Image, shot: dict, i: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Frame ``i`` of a shot: a view of ``photo`` moved by the shot's motion, with noise."""
    progress = i / max(1, shot["frames"] - 1)
    box = view(photo.size, shot, i, size, rng)
    pixels = np.asarray(photo.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.float32)
    if shot["motion"] == "fade":
        pixels *= 1 + shot["direction"] * 0.25 * (progress - 0.5)
    pixels += rng.normal(0, 3, size=pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_clip(path: Path, shots: list[dict], photos: dict[str, Image.Image], size: tuple[int, int],
               rng: np.random.Generator) -> list[int]:
    """Encode the shots; return the index of each shot's first frame (after the first shot)."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "veryfast"})
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    cuts, index = [], 0
    for n, shot in enumerate(shots):
        if n:
            cuts.append(index)
        for i in range(shot["frames"]):
            frame = av.VideoFrame.from_ndarray(render(photos[shot["photo"]], shot, i, size, rng), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            index += 1
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return cuts


def match(truth: list[int], found: list[int], tolerance: int = 1) -> int:
    """True cuts with a detected cut at most ``tolerance`` frames away, each detection used once."""
    unused = sorted(found)
    hits = 0
    for cut in truth:
        near = [d for d in unused if abs(d - cut) <= tolerance]
        if near:
            unused.remove(min(near, key=lambda d: abs(d - cut)))
            hits += 1
    return hits


def decode_only(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = sum(1 for _ in container.decode(stream))
    return n, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each clip")
    parser.add_argument("--size", default="480x270")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cut-threshold", type=float, default=None)
    parser.add_argument("--take-seconds", type=float, default=120.0, help="length of the long takes; 0 skips them")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    size = (width, height)
    config = ScanConfig() if args.cut_threshold is None else ScanConfig(video_cut_threshold=args.cut_threshold)
    extractor = KeyFrameExtractor.from_config(config)
    photos = {name: photo for name, photo in sample_photos().items() if min(photo.size) >= 256}
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as folder:
        measure(Path(folder), args, size, config, extractor, photos, rng)
    print("command: python " + " ".join(sys.argv))


def measure(folder: Path, args: argparse.Namespace, size: tuple[int, int], config: ScanConfig,
            extractor: KeyFrameExtractor, photos: dict[str, Image.Image], rng: np.random.Generator) -> None:
    started = time.perf_counter()
    clips = []
    for c in range(args.clips):
        shots = plan_shots(photos, args.seconds, size, rng)
        path = folder / f"clip-{c:02d}.mp4"
        clips.append((path, shots, write_clip(path, shots, photos, size, rng)))
    print(f"{args.clips} clips of {args.seconds:.0f} s at {size[0]}x{size[1]}, {FPS} fps: "
          f"{sum(len(s) for _, s, _ in clips)} shots, made in {time.perf_counter() - started:.0f} s "
          f"({len(photos)} photos)")

    true_cuts = found_cuts = hits = decoded = kept = 0
    pass_seconds = decode_frames = decode_seconds = 0.0
    by_motion: dict[str, list[int]] = {m: [0, 0] for m in MOTIONS}  # shots, key-frames
    for path, shots, truth in clips:
        n, seconds = decode_only(path)
        decode_frames += n
        decode_seconds += seconds
        started = time.perf_counter()
        result = extractor.extract(path)
        pass_seconds += time.perf_counter() - started
        assert result.error is None, result.error
        true_cuts += len(truth)
        found_cuts += len(result.cuts)
        hits += match(truth, result.cuts)
        decoded += result.n_decoded
        kept += len(result.keyframes)
        starts = [0, *truth]
        for frame in result.keyframes:  # the true shot a key-frame lies in, by its time
            index = round(frame.timestamp * FPS)
            shot = max(i for i, s in enumerate(starts) if s <= index)
            by_motion[shots[shot]["motion"]][1] += 1
        for shot in shots:
            by_motion[shot["motion"]][0] += 1
    precision = hits / found_cuts if found_cuts else 1.0
    recall = hits / true_cuts if true_cuts else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(f"shot boundaries (±1 frame): precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f} "
          f"({hits} of {true_cuts} cuts found, {found_cuts - hits} false)")
    print(f"key-frames: {kept} of {decoded:,} frames decoded = {kept / decoded:.2%} kept, "
          f"reduction {1 - kept / decoded:.1%}; per shot by motion: "
          + ", ".join(f"{m} {k / s:.2f}" for m, (s, k) in by_motion.items() if s))
    print(f"speed: decode + detect + pick {decoded / pass_seconds:,.0f} frames/s, decode alone "
          f"{decode_frames / decode_seconds:,.0f} frames/s ({pass_seconds / decode_seconds:.2f}x the time)")

    long_takes = []
    for motion in ("static", "pan") if args.take_seconds else ():
        shot = {"photo": min(photos), "frames": round(args.take_seconds * FPS), "motion": motion, "scale": 0.4, "x": 0.5,
                "y": 0.5, "direction": 1.0, "travel": 0.5}
        path = folder / f"take-{motion}.mp4"
        write_clip(path, [shot], photos, size, rng)
        result = extractor.extract(path)
        long_takes.append(f"{motion} {len(result.keyframes)} key-frames ({len(result.shots)} shot)")
    if long_takes:
        print(f"{args.take_seconds:g}-second takes (cap {config.video_frames_per_minute:g}/min): " + ", ".join(long_takes))
    print(f"settings: {config.video_params()}")


if __name__ == "__main__":
    main()
