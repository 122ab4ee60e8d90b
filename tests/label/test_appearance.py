"""How pictures look: the two-tone test that tells a silhouette or an ink drawing from a photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgcluster.label.appearance import two_tone


def jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_silhouettes_and_ink_drawings_are_two_tone_after_jpeg_too() -> None:
    silhouette = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(silhouette).ellipse((60, 40, 240, 150), fill=0)
    drawing = Image.new("RGB", (300, 200), (250, 248, 240))  # dark blue ink on cream paper
    ImageDraw.Draw(drawing).line([(20, 20), (280, 180), (20, 180), (280, 20)], fill=(10, 10, 60), width=12)
    for image in (silhouette, drawing):
        assert two_tone(image) and two_tone(jpeg(image))


def test_photos_dark_skies_and_blank_pages_are_not() -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(np.clip(rng.normal(120, 50, (200, 300, 3)), 0, 255).astype(np.uint8))
    sky = np.zeros((200, 300), dtype=np.uint8)
    sky[rng.integers(0, 200, 40), rng.integers(0, 300, 40)] = 255  # a few stars: one tone
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 300), (200, 1)).astype(np.uint8))
    for image in (photo, Image.fromarray(sky), Image.new("L", (300, 200), 255), gradient):
        assert not two_tone(image)


def test_of_scikit_images_sample_photos_only_the_horse_silhouette_is_two_tone() -> None:
    pytest.importorskip("skimage")
    from imgcluster.demo import sample_photos

    found = {name for name, photo in sample_photos().items() if two_tone(jpeg(photo))}
    assert found == {"horse"}
