"""The contract every embedding model keeps, and helpers shared by the families."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..config import check_device_name
from ..errors import ConfigError


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
        """float32 (n, 3, H, W), an array or a tensor already on the device → float32 (n, dim)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Everything a run records about the model: source, dim, preprocessing, pooling."""
        ...


def check_device(device: str = "auto") -> None:
    """Raise ConfigError now, before any work, when ``device`` is not a device name or this machine
    lacks it (cuda without a CUDA GPU, cuda:3 with one GPU, mps off Apple silicon). auto and cpu
    always work and need no torch import."""
    check_device_name(device)
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"No CUDA device here (device {device!r}); use --device cpu or auto.")
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(f"No CUDA device {index} here: this machine has {count} (cuda:0"
                              f"{f' to cuda:{count - 1}' if count > 1 else ''}); use one of those, or auto.")
    elif device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("No Apple GPU (mps) here; use --device cpu or auto.")


class LazyDevice:
    """For embedders that load lazily: ``device`` is resolved on first use (``auto`` imports torch),
    and ``batch_size`` is the class's ``cpu_batch_size`` on the CPU, 256 on a GPU. Subclasses set
    ``_requested_device`` and ``_device = None`` in their ``__init__``."""

    _requested_device: str = "auto"
    _device: str | None = None
    cpu_batch_size = 16

    @property
    def device(self) -> str:
        """The device it runs on (``auto`` resolved, which imports torch)."""
        if self._device is None:
            self._device = pick_device(self._requested_device)
        return self._device

    @property
    def batch_size(self) -> int:
        """Images per forward pass: ``cpu_batch_size`` on the CPU (measured per model), 256 on a GPU."""
        return self.cpu_batch_size if self.device == "cpu" else 256


def pick_device(device: str = "auto") -> str:
    """Resolve ``auto`` to cuda, then mps, then cpu; ConfigError for a device this machine lacks."""
    if device == "cpu":  # no torch import: an optimised backend's process may never need it
        return device
    import torch

    if device != "auto":
        check_device(device)
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def model_input(batch: Any, device: str) -> Any:
    """A batch as a tensor on ``device``: a NumPy batch is copied (from pinned memory, without
    blocking, on CUDA); a tensor, e.g. JPEGs decoded on the GPU, is used where it is."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    tensor = torch.from_numpy(np.ascontiguousarray(batch))
    if str(device).startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def autocast(device: str) -> Any:
    """fp16 autocast on CUDA (tensor cores; features are returned as float32), nothing elsewhere:
    on CPU, reduced precision is slower, not faster."""
    import contextlib

    import torch

    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
