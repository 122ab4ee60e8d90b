"""Shared fixtures: real images made with Pillow or shipped in scikit-learn, tiny saved models."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests never touch the network, even by accident.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DIGITS_FOR_TESTS = 500  # enough for the clusters to mean something, small enough for 2 cores


def digit_labels(root: Path) -> dict[str, int]:
    """``write_digits`` labels keyed by absolute image path."""
    with open(root / "labels.csv") as handle:
        return {str(root / "images" / row["path"]): int(row["label"]) for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 500 scikit-learn digits as PNGs, with labels.csv beside the image folder."""
    import imgcluster

    root = tmp_path_factory.mktemp("digits")
    imgcluster.write_digits(root, limit=DIGITS_FOR_TESTS)
    return root


@pytest.fixture(scope="session")
def digits_run(digits_dir: Path):
    """One full default run on the digits: most end-to-end tests read it instead of re-running."""
    import imgcluster

    return imgcluster.cluster(digits_dir / "images", model="efficientnet-lite0")


def photo(seed: int, size: tuple[int, int] = (96, 72), kind: int | None = None) -> Image.Image:
    """A synthetic photo: one of four visual kinds (stripes, disc, checks, gradient) with noise."""
    rng = np.random.default_rng(seed)
    kind = seed % 4 if kind is None else kind
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 60, size=3)
    if kind == 0:
        pattern = ((xx // 8) % 2)[..., None] * np.array([200, 40, 40])
    elif kind == 1:
        pattern = (((xx - width / 2) ** 2 + (yy - height / 2) ** 2) < (min(size) / 3) ** 2)[..., None] * np.array(
            [30, 180, 60])
    elif kind == 2:
        pattern = (((xx // 12) + (yy // 12)) % 2)[..., None] * np.array([40, 60, 210])
    else:
        pattern = (xx / width * 220)[..., None] * np.array([1.0, 1.0, 0.2])
    pixels = np.clip(base + pattern + rng.normal(0, 12, size=(height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def write_photos(folder: Path, count: int, start: int = 0, fmt: str = "JPEG") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(start, start + count):
        path = folder / f"photo-{seed:04d}.{'jpg' if fmt == 'JPEG' else fmt.lower()}"
        photo(seed).save(path, fmt)
        paths.append(path)
    return paths


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 24 small synthetic photos of four kinds."""
    write_photos(tmp_path / "photos", 24)
    return tmp_path / "photos"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer CLIP saved with save_pretrained, plus its preprocessor config: loads offline."""
    import json

    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path_factory.mktemp("tiny-clip")
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "vocab_size": 99, "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24)
    CLIPModel(config).eval().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "size": {"shortest_edge": 32}}))
    return folder
