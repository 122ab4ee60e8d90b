"""Take a run's clusters elsewhere: one folder per cluster, a FiftyOne dataset, or a table with names.

Exports write only into a new (or empty) folder the user names; they never move, rename or delete
the user's images: folders hold symbolic links (or copies, when asked or when links are impossible).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cluster.base import NOISE
from .errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = ("folders", "fiftyone", "csv", "parquet")
UNCLUSTERED = "unclustered"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: where, in which format, how many images it holds, linked or copied, and
    how many were left out because their file is gone since the run."""

    dest: Path
    format: str
    images: int
    linked: int = 0
    copied: int = 0
    missing: int = 0


@dataclass(frozen=True)
class ExportRow:
    """One image of a run as exports see it."""

    image_id: int
    path: str
    cluster: int
    membership_probability: float
    frame: Callable[[], bytes | None] | None = None  # a video key-frame: reads its JPEG from the workspace


def slug(text: str, limit: int = 40) -> str:
    """A folder-safe form of a name: lower case, words joined by '-', at most ``limit`` characters."""
    words = re.sub(r"[^\w]+", "-", text.casefold(), flags=re.UNICODE).strip("-_")
    return words[:limit].rstrip("-_")


def folder_names(clusters: Sequence[int], names: Mapping[int, str]) -> dict[int, str]:
    """Folder per cluster: the zero-padded id, then the name's slug ('03-cats'); unclustered apart."""
    width = max([2] + [len(str(c)) for c in clusters if c != NOISE])
    folders = {}
    for cluster in clusters:
        if cluster == NOISE:
            folders[cluster] = UNCLUSTERED
            continue
        label = slug(names.get(cluster, ""))
        folders[cluster] = f"{cluster:0{width}d}" + (f"-{label}" if label else "")
    return folders


def class_labels(clusters: Sequence[int], names: Mapping[int, str]) -> dict[int, str]:
    """A label per clustered cluster, unique even where two clusters got the same name."""
    plain = {c: names.get(c) or f"cluster {c}" for c in clusters if c != NOISE}
    counts: dict[str, int] = {}
    for label in plain.values():
        counts[label] = counts.get(label, 0) + 1
    return {c: label if counts[label] == 1 else f"{label} ({c})" for c, label in plain.items()}


def export_folders(rows: Sequence[ExportRow], names: Mapping[int, str], dest: str | os.PathLike[str],
                   mode: str = "link") -> ExportResult:
    """One sub-folder of ``dest`` per cluster holding links to (or copies of) its images."""
    if mode not in ("link", "copy"):
        raise ConfigError(f"mode must be 'link' or 'copy'; got {mode!r}.")
    target = _new_folder(dest)
    folders = folder_names(sorted({r.cluster for r in rows}), names)
    linked = copied = missing = 0
    used: set[Path] = set()
    for row in rows:
        if row.frame is not None:  # not a file: its JPEG is written, as trip.mov-t12.345.jpg
            jpeg = row.frame()
            if jpeg is None:
                missing += 1
                continue
            place = _free_name(target / folders[row.cluster], Path(Path(row.path).name.replace("#t=", "-t") + ".jpg"),
                               row.image_id, used)
            place.parent.mkdir(parents=True, exist_ok=True)
            place.write_bytes(jpeg)
            copied += 1
            continue
        if not os.path.isfile(row.path):
            missing += 1
            continue
        place = _free_name(target / folders[row.cluster], Path(row.path), row.image_id, used)
        place.parent.mkdir(parents=True, exist_ok=True)
        if mode == "link" and _symlink(row.path, place):
            linked += 1
        else:
            shutil.copy2(row.path, place)
            copied += 1
    if missing:
        log.warning("%d image(s) of the run are gone from their folder and were left out", missing)
    return ExportResult(target, "folders", linked + copied, linked, copied, missing)


def export_fiftyone(rows: Sequence[ExportRow], names: Mapping[int, str],
                    dest: str | os.PathLike[str]) -> ExportResult:
    """A FiftyOneImageClassificationDataset that points at the images where they are: ``data.json``
    (sample id → absolute path) and ``labels.json`` (classes, and each sample's class index; null
    for unclustered images). Load it with ``fo.Dataset.from_dir(dataset_dir=DEST,
    dataset_type=fo.types.FiftyOneImageClassificationDataset, data_path="data.json")``."""
    target = _new_folder(dest)
    labels = class_labels(sorted({r.cluster for r in rows}), names)
    classes = [labels[c] for c in sorted(labels)]
    index = {c: classes.index(label) for c, label in labels.items()}
    ids = {row.image_id: f"{row.image_id:08d}" for row in rows}
    data = {ids[row.image_id]: row.path for row in rows}
    targets = {ids[row.image_id]: index.get(row.cluster) for row in rows}
    (target / "data.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    (target / "labels.json").write_text(json.dumps({"classes": classes, "labels": targets}, indent=1),
                                        encoding="utf-8")
    return ExportResult(target, "fiftyone", len(rows))


def export_table(table: Mapping[str, Sequence[object]], dest: str | os.PathLike[str], fmt: str) -> ExportResult:
    """The run's per-image table (with the ``name`` column) as one CSV or Parquet file at ``dest``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(dest).expanduser().resolve()
    if path.exists():
        raise ConfigError(f"{path} already exists; exports never overwrite files. Give a new file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = pacsv.write_csv if fmt == "csv" else pq.write_table
    writer(pa.table(dict(table)), str(path))
    return ExportResult(path, fmt, len(next(iter(table.values()), [])))


def _new_folder(dest: str | os.PathLike[str]) -> Path:
    target = Path(dest).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} already exists and is not an empty folder; exports never overwrite or delete "
                          "files. Give a new folder.")
    target.mkdir(parents=True, exist_ok=True)
    return target


def _free_name(folder: Path, source: Path, image_id: int, used: set[Path]) -> Path:
    """``folder/name``, or ``name-<image id>`` when two images of a cluster share a file name."""
    place = folder / source.name
    if place in used:
        place = folder / f"{source.stem}-{image_id}{source.suffix}"
    used.add(place)
    return place


def _symlink(source: str, place: Path) -> bool:
    try:
        place.symlink_to(os.path.abspath(source))
        return True
    except (OSError, NotImplementedError) as error:  # e.g. a file system without links: copy instead
        log.info("cannot link %s (%s); copying it", place, error)
        return False
