"""A demo collection made of real images that ship in a package: scikit-learn's handwritten digits."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ConfigError


def write_digits(dest: str | os.PathLike[str], limit: int | None = None, side: int = 64) -> Path:
    """Write scikit-learn's 1,797 digit scans as PNGs under ``dest/images/<label>/``, and
    ``dest/labels.csv`` (path relative to ``dest/images``, label) for evaluation.

    The 8×8 scans (16 grey levels) are scaled to ``side`` pixels as dark ink on white paper.
    ``limit`` keeps the first N for quick tries. Existing files are kept, so this is cheap to repeat.
    Returns the image folder ``dest/images``.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1 image; got {limit}. Leave it unset for all 1,797.")
    root = Path(dest).expanduser().resolve()
    folder = root / "images"
    blocking = next((p for p in (folder, root, *root.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError(f"{blocking} is a file; give a new folder (or an earlier demo's) to write the digits into.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"Cannot create {folder} ({error.strerror}). Give a folder you may write to.") from None
    from sklearn.datasets import load_digits

    digits = load_digits()
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


# scikit-image's sample photos (``cat`` is ``chelsea`` again, ``checkerboard`` is drawn, not taken).
SAMPLE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
                 "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina",
                 "rocket", "text")


def write_photo_crops(dest: str | os.PathLike[str], per_photo: int = 30, side: int = 160, seed: int = 0) -> Path:
    """A labelled set of real photographs: ``per_photo`` random crops (30-80% of the side, some
    mirrored, brightness varied) of each scikit-image and scikit-learn sample photo, as JPEGs under
    ``dest/images/<photo>/``, with ``dest/labels.csv`` (path, label = the photo it came from).

    21 photos (people, animals, objects, textures, scans, astronomy); a good clustering puts the crops
    of one photo together. Needs scikit-image (``pip install scikit-image``). Returns ``dest/images``.
    """
    sources = sample_photos()
    rng = np.random.default_rng(seed)
    root = Path(dest).expanduser().resolve()
    folder = root / "images"
    rows = []
    for name, photo in sources.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_photo):
            path = folder / name / f"{name}-{index:03d}.jpg"
            crop = _random_crop(photo, rng, side)  # drawn even when the file exists: same crops every time
            if not path.exists():
                crop.save(path, quality=90)
            rows.append((str(path.relative_to(folder)), name))
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return folder


def sample_photos() -> dict[str, Image.Image]:
    """The sample photographs scikit-image (and scikit-learn) ship, by name, as RGB images."""
    try:
        import skimage.data
    except ImportError as error:
        raise ImportError("The photo demo needs scikit-image: pip install scikit-image") from error
    from sklearn.datasets import load_sample_images

    photos = {name: Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in SAMPLE_PHOTOS}
    for filename, pixels in zip(load_sample_images().filenames, load_sample_images().images):
        photos[Path(filename).stem] = Image.fromarray(pixels).convert("RGB")
    return photos


def _random_crop(photo: Image.Image, rng: np.random.Generator, side: int) -> Image.Image:
    width, height = photo.size
    size = int(min(width, height) * rng.uniform(0.3, 0.8))
    left, top = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
    crop = photo.crop((left, top, left + size, top + size)).resize((side, side), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gain = rng.uniform(0.8, 1.2)
    return Image.fromarray(np.clip(np.asarray(crop, dtype=np.float32) * gain, 0, 255).astype(np.uint8))
