"""Plain records that cross the store boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One file of the catalogue. ``status`` is ok, skipped or missing."""

    # slots: a collection holds one record per image, and a __dict__ each cost ~0.2 GB at 1M images.

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    format: str | None
    width: int | None
    height: int | None
    status: str
    skip_stage: str | None = None
    skip_reason: str | None = None
    # A key-frame of a video: the video's path, the frame's time in seconds and its shot (0-based).
    source_path: str | None = None
    timestamp: float | None = None
    shot: int | None = None
    video_params: str | None = None  # a video's row: the settings its key-frames were extracted with

    def describe(self, name: str | None = None) -> str:
        """How a person would name this item: the file, or "frame of VIDEO at mm:ss" (``name``: the
        file or video as it should be shown, e.g. relative to the clustered folder)."""
        if self.source_path is None or self.timestamp is None:
            return name if name is not None else self.path
        return f"frame of {name if name is not None else self.source_path} at {clock(self.timestamp)}"


def clock(seconds: float) -> str:
    """A time in a video as mm:ss (h:mm:ss from an hour)."""
    whole = int(seconds)
    hours, minutes, secs = whole // 3600, whole // 60 % 60, whole % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class ScannedFile:
    """What scanning learned about a file, before it has a catalogue id."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    format: str | None
    width: int | None
    height: int | None
    status: str
    skip_stage: str | None = None
    skip_reason: str | None = None
    source_path: str | None = None
    timestamp: float | None = None
    shot: int | None = None
    video_params: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A finished clustering run: what was done, with what, and how it scored."""

    key: str
    created_at: float
    root: str
    model_id: str
    model_name: str
    n_images: int
    n_clusters: int
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assignments:
    """Per-image results of a run; arrays of equal length, aligned with ``image_ids``."""

    image_ids: Any        # (n,) int64
    clusters: Any         # (n,) int64, -1 = unclustered
    membership_probability: Any  # (n,) float in [0, 1]
    x: Any                # (n,) float, 2-D map
    y: Any
    how: Any = None       # (n,) str: fit | filed | attached | duplicate (see schema.py); None: all "fit"

    def how_per_image(self) -> list[str]:
        """How each image got its cluster, as a list aligned with ``image_ids``."""
        if self.how is None:
            return ["fit"] * len(self.image_ids)
        return [str(h) for h in self.how]


# A name's confidence in words, from how often bench/names.py found the ImageNet namer's names right
# (docs/guide/names.md, 2026-12-07): from 0.5 on 18 of 25 (the misses are the classifier's own
# confident errors: the clock it calls a spotlight, a horse silhouette it calls a dog), below 0.5 2 of
# 17. 0.8-0.9 was right 2 of 4, so sure starts at 0.9 (2 of 2 there: too few to say more).
CONFIDENCE_LEVELS = ((0.9, "sure"), (0.5, "likely"))


@dataclass(frozen=True)
class ClusterName:
    """A name for one cluster of a run, where it came from and how sure its source was.

    ``source`` is manual, imagenet, zero-shot or vlm; ``confidence`` is a probability in [0, 1] or
    None when the source gives none; ``candidates`` are the source's best (name, score) pairs, best
    first. ``error`` says why the source's last try failed (an earlier ``name`` is then kept).
    ``level`` is the confidence in words (sure, likely, unsure).
    """

    cluster: int
    name: str
    source: str
    confidence: float | None = None
    candidates: list[tuple[str, float | None]] = field(default_factory=list)
    error: str | None = None
    created_at: float = 0.0

    @property
    def level(self) -> str | None:
        """How far to trust the name, in a word: sure, likely or unsure; None for a manual name (the
        user's own) and for a source that gives no confidence (a VLM)."""
        if self.source == "manual" or self.confidence is None:
            return None
        return next((word for bar, word in CONFIDENCE_LEVELS if self.confidence >= bar), "unsure")
