"""Key-frames of videos: shots found by colour-histogram changes, then one to three sharp frames per shot.

A video is decoded once, in one pass (PyAV, the optional ``video`` extra). Every frame, up to
``detect_fps`` a second, is sampled about 160 columns wide straight from its YUV planes (converting
every frame to RGB cost ten times the decoding) and its 8x8x8 YUV histogram compared with the
previous one's; a change above ``cut_threshold`` that also stands far above the changes of the
second before it is a cut (``CutDetector``: pans and motion change the histogram a little every
frame, a cut changes it a lot once). Within a shot the sharpest frame of every half second is kept
as a candidate (``Candidates``: windows double when there are too many, so a long take costs
bounded memory); when the shot ends it is cut into parts, and each part's sharpest candidate near
its middle becomes a key-frame unless it looks like one kept before it from the same shot.

A decoding error ends the pass, not the video: the key-frames found before the damage are kept and
the error is returned with the time it happened (``VideoFrames.error``, ``error_at``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .config import ScanConfig
from .store.records import clock

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'imgcluster[video]'"
# ISO base media files that hold pictures, not videos (HEIF/HEIC, AVIF, Canon raw).
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
                           b"avis", b"crx "})
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_SMALL_WIDTH = 160       # about this many columns of a frame are sampled to compare frames
_WINDOW = 0.5            # seconds: a shot keeps the sharpest frame of each window as a candidate
_MAX_CANDIDATES = 96     # per shot; beyond, windows double (96 frames of 640x360 RGB are 66 MB)
_MIN_PART_SECONDS = 1.0  # a shot gets a second key-frame only from 2 s on
_CENTRE_WEIGHT = 0.5     # in a part, sharpness (relative to the part's sharpest) minus this x distance from the middle
# Tuned on bench/video.py's clips with seeds 5, 7 and 11 (8 clips each; the bench's seed 0 is held out):
# boundary F1 0.99-1.0 for threshold 0.02-0.025 with these two; contrast 1 or threshold 0.01 let false cuts in.
_HISTORY_SECONDS = 1.0   # a cut is judged against the changes of this much video before it
_CONTRAST = 1.5          # ... and must be this many times their mean plus three deviations
_SPIKE = 2.0             # ... and this many times the change just before it and just after it


def video_format(head: bytes) -> str | None:
    """The video container a file's first bytes announce: MP4, QuickTime, Matroska, WebM, AVI, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return "QuickTime" if brand == b"qt  " else "MP4"
    if len(head) >= 8 and head[4:8] in _QUICKTIME_ATOMS:
        return "QuickTime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML, the DocType says which flavour
        return "WebM" if b"webm" in head[:64] else "Matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return None


def decoder_available() -> bool:
    """True when PyAV (``av``), which decodes videos, is installed."""
    return importlib.util.find_spec("av") is not None


@dataclass(frozen=True)
class KeyFrame:
    """One chosen frame: its time in seconds from the start, its shot (0-based) and its pixels (RGB)."""

    timestamp: float
    shot: int
    image: Image.Image


@dataclass(frozen=True)
class VideoFrames:
    """What one pass over a video found. ``shots`` are (start, end) in seconds; ``cuts`` the indices of
    decoded frames that start a new shot (0-based, the first shot's start not included); ``error`` says
    why decoding stopped early (``error_at``: seconds, where the damage starts)."""

    keyframes: list[KeyFrame] = field(default_factory=list)
    shots: list[tuple[float, float]] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    n_decoded: int = 0
    width: int | None = None
    height: int | None = None
    error: str | None = None
    error_at: float | None = None


class CutDetector:
    """Decides whether a change between two compared frames is a hard cut: at least ``threshold``,
    ``spike`` times the changes just before and just after it (motion changes every frame a little,
    a cut changes one a lot), ``contrast`` times above the recent changes (their mean plus three
    standard deviations over the last ``window``), and ``min_gap`` compared frames after the last cut.

    A change is the geometric mean of the colour-histogram change (half the L1 distance of 8x8x8 YUV
    histograms) and the picture change (mean absolute difference of grey miniatures, 0-1): either
    alone is fooled, the histogram by flat areas dithering across a bin edge, pixels by fast pans."""

    def __init__(self, threshold: float = 0.025, window: int = 30, min_gap: int = 15, contrast: float = _CONTRAST,
                 spike: float = _SPIKE):
        self.threshold, self.window, self.min_gap = threshold, window, min_gap
        self.contrast, self.spike = contrast, spike
        self.recent_: deque[float] = deque(maxlen=max(2, window))
        self.since_cut_ = min_gap

    def decide(self, change: float, before: float, after: float) -> bool:
        self.since_cut_ += 1
        recent = np.asarray(self.recent_, dtype=np.float64)
        level = float(recent.mean() + 3 * recent.std()) if len(recent) >= 2 else 0.0
        is_cut = (change >= self.threshold and change >= self.spike * max(before, after)
                  and change >= self.contrast * level and self.since_cut_ >= self.min_gap)
        if is_cut:
            self.since_cut_ = 0
        else:  # a cut's spike must not raise the bar for the next shot
            self.recent_.append(change)
        return is_cut


def frame_change(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """How different two sampled frames (histogram, grey miniature) are; see CutDetector."""
    histogram = 0.5 * float(np.abs(a[0] - b[0]).sum())
    picture = float(np.abs(a[1] - b[1]).mean())
    return math.sqrt(histogram * picture)


@dataclass(frozen=True)
class _Sampled:
    index: int
    timestamp: float
    change: float
    sharpness: float
    signature: tuple[np.ndarray, np.ndarray]
    convert: Callable[[], Image.Image]


@dataclass
class _Candidate:
    slot: int
    timestamp: float
    sharpness: float
    signature: tuple[np.ndarray, np.ndarray]
    convert: Callable[[], Image.Image] | None  # holds the decoded frame until its slot is over
    image: Image.Image | None = None

    def settle(self) -> None:
        if self.convert is not None:
            self.image, self.convert = self.convert(), None


class Candidates:
    """The sharpest frame of each ``window``-second slot of one shot; past ``limit`` candidates, slots
    double in length (neighbours merge, the sharper stays), so memory is bounded however long the shot."""

    def __init__(self, start: float, window: float = _WINDOW, limit: int = _MAX_CANDIDATES):
        self.start, self.window, self.limit = start, window, limit
        self.items_: list[_Candidate] = []

    def offer(self, timestamp: float, sharpness: float, signature: tuple[np.ndarray, np.ndarray],
              convert: Callable[[], Image.Image]) -> None:
        """Consider a frame; ``convert`` (the frame to RGB) is called once it is its slot's sharpest."""
        slot = int(max(0.0, timestamp - self.start) / self.window)
        if self.items_ and self.items_[-1].slot == slot:
            if sharpness > self.items_[-1].sharpness:
                self.items_[-1] = _Candidate(slot, timestamp, sharpness, signature, convert)
            return
        if self.items_:
            self.items_[-1].settle()
        self.items_.append(_Candidate(slot, timestamp, sharpness, signature, convert))
        if len(self.items_) > self.limit:
            self.window *= 2
            merged: dict[int, _Candidate] = {}
            for item in self.items_:
                item.slot //= 2
                if item.slot not in merged or item.sharpness > merged[item.slot].sharpness:
                    merged[item.slot] = item
            self.items_ = list(merged.values())

    def choose(self, end: float, frames_per_shot: int, frames_per_minute: float) -> list[_Candidate]:
        """The shot's key-frames: one per part (see ScanConfig.video_frames_per_shot), time order."""
        if not self.items_:
            return []
        duration = max(end - self.start, 1e-6)
        long_part = 60.0 / frames_per_minute
        if duration > frames_per_shot * long_part:
            parts = math.ceil(duration / long_part)
        else:
            parts = max(1, min(frames_per_shot, int(duration // _MIN_PART_SECONDS)))
        kept: list[_Candidate] = []
        for part in range(parts):
            low, high = self.start + duration * part / parts, self.start + duration * (part + 1) / parts
            inside = [c for c in self.items_ if low <= c.timestamp < high or (part == parts - 1 and c.timestamp >= high)]
            if not inside:
                continue
            middle, half = (low + high) / 2, (high - low) / 2
            top = max(c.sharpness for c in inside) or 1.0
            best = max(inside, key=lambda c: c.sharpness / top - _CENTRE_WEIGHT * abs(c.timestamp - middle) / half)
            if not any(_alike(best.signature, k.signature) for k in kept):
                kept.append(best)
        for candidate in kept:
            candidate.settle()
        return kept


class KeyFrameExtractor:
    """Finds a video's shots and picks its key-frames in one decoding pass (parameters: ScanConfig.video_*)."""

    def __init__(self, detect_fps: float = 30.0, cut_threshold: float = 0.025, min_shot_seconds: float = 0.5,
                 frames_per_shot: int = 3, frames_per_minute: float = 6.0, frame_side: int = 640):
        self.detect_fps, self.cut_threshold, self.min_shot_seconds = detect_fps, cut_threshold, min_shot_seconds
        self.frames_per_shot, self.frames_per_minute, self.frame_side = frames_per_shot, frames_per_minute, frame_side

    @classmethod
    def from_config(cls, config: ScanConfig) -> KeyFrameExtractor:
        return cls(config.video_detect_fps, config.video_cut_threshold, config.video_min_shot_seconds,
                   config.video_frames_per_shot, config.video_frames_per_minute, config.video_frame_side)

    def extract(self, path: str | os.PathLike[str]) -> VideoFrames:
        """Decode ``path`` once and return its shots and key-frames; never raises for a bad file."""
        import av

        try:
            container = av.open(str(path))
        except Exception as error:  # PyAV raises many types on damaged or unsupported files
            return VideoFrames(error=f"cannot open the video: {_reason(error)}", error_at=0.0)
        with container:
            if not container.streams.video:
                return VideoFrames(error="the file holds no video stream", error_at=0.0)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return self._pass(container, stream)

    def _pass(self, container, stream) -> VideoFrames:  # type: ignore[no-untyped-def]
        from av.video.reformatter import VideoReformatter

        rate = float(stream.average_rate or stream.guessed_rate or 30.0)
        step = max(1, round(rate / self.detect_fps))  # compare every step-th frame
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        detector = CutDetector(self.cut_threshold, window=max(2, round(_HISTORY_SECONDS * rate / step)),
                               min_gap=max(1, round(self.min_shot_seconds * rate / step)))
        keyframes: list[KeyFrame] = []
        shots: list[tuple[float, float]] = []
        cuts: list[int] = []
        candidates: Candidates | None = None
        size: tuple[int, int] | None = None
        n_decoded, end, error = 0, 0.0, None
        converter = VideoReformatter()  # its own scaler: one shared with other sizes is rebuilt at each switch
        # A change is judged once the next one is known, so each compared frame waits one step here.
        pending: _Sampled | None = None
        before = 0.0

        def close_shot(at: float) -> None:
            assert candidates is not None
            chosen = candidates.choose(at, self.frames_per_shot, self.frames_per_minute)
            keyframes.extend(KeyFrame(round(c.timestamp, 3), len(shots), c.image)  # type: ignore[arg-type]
                             for c in chosen)
            shots.append((round(candidates.start, 3), round(at, 3)))

        def settle(item: _Sampled, after: float) -> None:
            nonlocal candidates, before
            if candidates is None:
                candidates = Candidates(item.timestamp)
            elif detector.decide(item.change, before, after):
                close_shot(item.timestamp)
                cuts.append(item.index)
                candidates = Candidates(item.timestamp)
            before = item.change
            candidates.offer(item.timestamp, item.sharpness, item.signature, item.convert)

        try:
            for index, frame in enumerate(container.decode(stream)):
                n_decoded += 1
                timestamp = max(0.0, float(frame.time) - origin) if frame.time is not None else index / rate
                end = timestamp + 1.0 / rate
                if index % step:
                    continue
                if size is None:
                    size = _fit(frame.width, frame.height, self.frame_side)
                luma, histogram = _sample(frame)
                signature = (histogram, _thumb(luma))
                change = 0.0 if pending is None else frame_change(pending.signature, signature)
                if pending is not None:
                    settle(pending, change)
                width, height = size
                pending = _Sampled(index, timestamp, change, _sharpness(luma), signature,
                                   lambda f=frame, w=width, h=height: converter.reformat(
                                       f, width=w, height=h, format="rgb24").to_image())
        except Exception as failure:  # damage part-way: keep what came before
            error = f"decoding stopped at {clock(end)} ({end:.2f} s): {_reason(failure)}"
        if pending is not None:
            settle(pending, 0.0)
        if candidates is not None:
            close_shot(end)
        if error is None:
            declared = _declared_duration(container, stream)
            if declared is not None and end < declared - max(1.0, 0.02 * declared):
                error = (f"the video stops at {clock(end)} ({end:.2f} s) though the file says it lasts "
                         f"{clock(declared)}: truncated or damaged")
        if error is not None:
            log.info("%s: %s (%d key-frames kept)", container.name, error, len(keyframes))
        width, height = size if size is not None else (None, None)
        return VideoFrames(keyframes, shots, cuts, n_decoded, width, height, error,
                           round(end, 3) if error is not None else None)


def _declared_duration(container, stream) -> float | None:  # type: ignore[no-untyped-def]
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _plane(plane) -> np.ndarray:  # type: ignore[no-untyped-def]
    rows = np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height).reshape(plane.height, -1)
    return rows[:, :plane.width]


def _sample(frame) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """About 160 columns of a frame's luma (float32) and its 8x8x8 YUV histogram (summing to 1),
    read from the YUV 4:2:0 planes; other pixel formats are converted to that first."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    y, u, v = (_plane(p) for p in frame.planes[:3])
    step = max(1, u.shape[1] // _SMALL_WIDTH)
    u, v = u[::step, ::step], v[::step, ::step]
    luma = y[::2 * step, ::2 * step][:u.shape[0], :u.shape[1]]
    u, v = u[:luma.shape[0], :luma.shape[1]], v[:luma.shape[0], :luma.shape[1]]
    # The chroma of real pictures lies well inside 64-192: 16-wide bins there, the rest in the end bins.
    bins = ((luma >> 5).astype(np.int32) << 6) | (np.clip((u.astype(np.int32) - 64) >> 4, 0, 7) << 3) | np.clip(
        (v.astype(np.int32) - 64) >> 4, 0, 7)
    counts = np.bincount(bins.ravel(), minlength=512).astype(np.float64)
    return luma.astype(np.float32), counts / counts.sum()


def _sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image: blur (motion, focus) lowers it."""
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(laplacian.var())


def _thumb(grey: np.ndarray) -> np.ndarray:
    """A grey miniature about 32 columns wide in [0, 1]: block means, so that noise averages out and
    a small motion changes it smoothly (every k-th pixel aliases: a bar moving 2 px a frame showed as a
    change every other frame, which looks like a string of cuts)."""
    k = max(1, grey.shape[1] // 32)
    rows, cols = grey.shape[0] // k, grey.shape[1] // k
    return grey[:rows * k, :cols * k].reshape(rows, k, cols, k).mean(axis=(1, 3)) / 255.0


def _alike(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    # Measured on the bench's scenes: a static shot with sensor noise differs by ~0.02, a pan of a
    # quarter frame by 0.1 and more.
    return 0.5 * float(np.abs(a[0] - b[0]).sum()) < 0.3 and float(np.abs(a[1] - b[1]).mean()) < 0.06


def _reason(error: Exception) -> str:
    return str(error).strip() or type(error).__name__
