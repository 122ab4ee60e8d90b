"""The image atlas: zoomed in, the map's points are drawn as their thumbnails, taken from sprite
sheets of ``PER_SHEET`` thumbnails each (a ``PER_ROW`` x ``PER_ROW`` grid of ``TILE`` px tiles).

The map's points are served in Z-order (Morton code of their quantised position), and sheet ``s``
holds points ``s * PER_SHEET`` to ``(s + 1) * PER_SHEET - 1`` of that order: neighbours on the map
share sheets, so a zoomed-in view needs a handful of requests, not one per image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

TILE, PER_ROW = 64, 16
PER_SHEET = PER_ROW * PER_ROW


def _spread(values: np.ndarray) -> np.ndarray:
    """Put a zero bit between each of the 16 low bits of ``values``."""
    v = values.astype(np.uint64)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def tile_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A permutation of the points (n,) in Z-order of their position on the map."""
    if not len(x):
        return np.zeros(0, dtype=np.int64)

    def quantise(v: np.ndarray) -> np.ndarray:
        low, high = float(np.min(v)), float(np.max(v))
        return np.clip((v - low) / max(high - low, 1e-12) * 65535, 0, 65535).astype(np.uint64)

    return np.argsort(_spread(quantise(x)) | (_spread(quantise(y)) << np.uint64(1)), kind="stable")


def compose_sheet(thumbnails: Sequence[bytes | None], quality: int = 80) -> bytes:
    """One JPEG sprite sheet: thumbnail i fitted (aspect kept, centred) in tile i, row-major; a
    missing or unreadable thumbnail leaves its tile grey."""
    from PIL import Image

    rows = max(1, -(-len(thumbnails) // PER_ROW))
    sheet = Image.new("RGB", (PER_ROW * TILE, rows * TILE), (225, 228, 232))
    for i, data in enumerate(thumbnails):
        if not data:
            continue
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.draft("RGB", (TILE, TILE))  # JPEG decodes at a reduced scale: several times faster
                tile = image.convert("RGB")
                tile.thumbnail((TILE, TILE))
        except OSError:
            continue
        sheet.paste(tile, ((i % PER_ROW) * TILE + (TILE - tile.width) // 2,
                           (i // PER_ROW) * TILE + (TILE - tile.height) // 2))
    buffer = io.BytesIO()
    sheet.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
