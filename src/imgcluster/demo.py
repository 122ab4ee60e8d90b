"""A demo collection made of real images that ship in a package: scikit-learn's handwritten digits."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(dest: str | os.PathLike[str], limit: int | None = None, side: int = 64) -> Path:
    """Write scikit-learn's 1,797 digit scans as PNGs under ``dest/images/<label>/``, and
    ``dest/labels.csv`` (path relative to ``dest/images``, label) for evaluation.

    The 8×8 scans (16 grey levels) are scaled to ``side`` pixels as dark ink on white paper.
    ``limit`` keeps the first N for quick tries. Existing files are kept, so this is cheap to repeat.
    Returns the image folder ``dest/images``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = Path(dest).expanduser().resolve()
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    count = len(digits.images) if limit is None else min(limit, len(digits.images))
    rows = []
    for index in range(count):
        label = int(digits.target[index])
        path = folder / str(label) / f"digit-{index:04d}.png"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            ink = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(ink, "L").resize((side, side), Image.Resampling.BICUBIC).save(path)
        rows.append((str(path.relative_to(folder)), label))
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return folder
