"""The contract every embedding model keeps, and helpers shared by the families."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from PIL import Image


class Embedder(Protocol):
    """A loaded image model. ``embed`` returns raw features; the runner L2-normalises them."""

    name: str        # what the user asked for, e.g. "efficientnet-lite0" or a HF id
    model_id: str    # cache key: changes whenever the weights or the pooling change
    dim: int
    input_size: int  # shorter side the model wants; lets JPEG decoding skip pixels
    batch_size: int  # images per forward pass that run fastest on its device (measured, see each family)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image → float32 (3, H, W)."""
        ...

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """float32 (n, 3, H, W) → float32 (n, dim)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Everything a run records about the model: source, dim, preprocessing, pooling."""
        ...


def pick_device(device: str = "auto") -> str:
    """Resolve ``auto`` to cuda, then mps, then cpu."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
