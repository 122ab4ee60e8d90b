"""Hugging Face image models (CLIP, SigLIP, DINOv2, ViT …) through transformers, offline-first.

Weights come from a local folder, the Hugging Face cache, or (only when the user named the model
and the machine is online) a download. Preprocessing is read from ``preprocessor_config.json``
and done with Pillow/NumPy, so torchvision is never needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from .base import pick_device
from .preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess

log = logging.getLogger(__name__)

_TEXT_TOWER_TYPES = ("clip", "siglip", "siglip2", "chinese_clip", "altclip")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


def locate(source: str, allow_download: bool = False) -> Path:
    """Folder holding the model's files: ``source`` itself, its HF cache snapshot, or a download.

    Raises ModelUnavailable with the steps to get the weights when none of these works.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelUnavailable(f"{path} is a folder but holds no config.json. Point --model at a folder "
                                   "written by `save_pretrained` (config.json plus model.safetensors).")
        return path.resolve()
    if "/" not in source or source.startswith((".", "/", "~")):
        raise ModelUnavailable(f"{source!r} is neither a model folder nor a Hugging Face id (owner/name).")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception:
        log.debug("%s is not in the Hugging Face cache", source, exc_info=True)
    if allow_download and os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0"):
        try:
            log.info("downloading %s from the Hugging Face hub", source)
            return Path(snapshot_download(source, allow_patterns=[
                "*.json", "*.safetensors", "*.txt", "*.model", "*.bin"]))
        except Exception as error:
            log.debug("download of %s failed", source, exc_info=True)
            failure = f" The download failed: {str(error).splitlines()[0]}"
    else:
        failure = ""
    raise ModelUnavailable(
        f"The weights of {source} are not on this machine.{failure} To use it offline, either run "
        f"`huggingface-cli download {source}` on a machine with internet and copy "
        "~/.cache/huggingface/hub to this one (or set HF_HOME), or save the model with "
        "`save_pretrained(DIR)` and pass --model DIR. Without it, --model efficientnet-lite0 "
        "works offline.")


def weights_present(source: str) -> bool:
    """True when ``source`` can be loaded without the network."""
    try:
        folder = locate(source, allow_download=False)
    except ModelUnavailable:
        return False
    return any((folder / name).exists() for name in _WEIGHT_FILES)


def _model_id(folder: Path, source: str) -> str:
    parts = folder.parts
    if "snapshots" in parts:  # HF cache: the commit names the weights exactly
        return f"hf:{source}@{parts[parts.index('snapshots') + 1][:12]}"
    digest = hashlib.blake2b(digest_size=6)
    digest.update((folder / "config.json").read_bytes())
    for name in _WEIGHT_FILES:
        weights = folder / name
        if weights.exists():
            stat = weights.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"hf-dir:{folder}#{digest.hexdigest()}"


def _preprocess_for(folder: Path, config: Any) -> Preprocess:
    vision = getattr(config, "vision_config", config)
    image_size = getattr(vision, "image_size", 224)
    if isinstance(image_size, (list, tuple)):
        image_size = image_size[0]
    family_mean, family_std = ((CLIP_MEAN, CLIP_STD) if config.model_type in _TEXT_TOWER_TYPES
                               else (IMAGENET_MEAN, IMAGENET_STD))
    settings: dict[str, Any] = {}
    processor_file = folder / "preprocessor_config.json"
    if processor_file.exists():
        settings = json.loads(processor_file.read_text())
    crop = _edge(settings.get("crop_size"), image_size) if settings.get("do_center_crop", True) else None
    resize = _edge(settings.get("size"), image_size)
    return Preprocess(
        resize=resize, crop=crop or resize,
        mean=tuple(settings.get("image_mean", family_mean)),  # type: ignore[arg-type]
        std=tuple(settings.get("image_std", family_std)),  # type: ignore[arg-type]
        resample="bicubic" if settings.get("resample", 3) == 3 else "bilinear")


def _edge(value: Any, default: int) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return int(value.get("shortest_edge") or value.get("height") or default)
    return int(default)


class HfImageModel:
    """Any transformers image model. CLIP-like models use ``get_image_features``; others the
    pooler output, else the first (CLS) token, else the spatial mean."""

    def __init__(self, source: str, name: str | None = None, device: str = "auto",
                 allow_download: bool = False):
        from transformers import AutoConfig, AutoModel

        self.name = name or source
        self.source = source
        self.folder = locate(source, allow_download=allow_download)
        self.device = pick_device(device)
        config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
        self.model_type = config.model_type
        try:
            model = AutoModel.from_pretrained(self.folder, local_files_only=True)
        except OSError as error:
            raise ModelUnavailable(f"Could not load the weights in {self.folder}: {error}") from error
        self.model = model.eval().to(self.device)
        self.has_text_tower = hasattr(model, "get_text_features")
        self._preprocess = _preprocess_for(self.folder, config)
        self.input_size = self._preprocess.crop
        # CLIP ViT-B/32 on 2 CPU cores: 13 images/s at batch 1, 21 at 8, 19 at 16-64.
        self.batch_size = 16 if self.device == "cpu" else 256
        self.pooling = "image projection" if hasattr(model, "get_image_features") else "pooler/cls"
        self.model_id = f"{_model_id(self.folder, source)}:{self.pooling.replace(' ', '-')}"
        probe = np.zeros((1, 3, self.input_size, self.input_size), dtype=np.float32)
        self.dim = int(self.embed(probe).shape[1])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._preprocess(image)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            pixels = torch.from_numpy(batch).to(self.device)
            if hasattr(self.model, "get_image_features"):
                output = self.model.get_image_features(pixel_values=pixels)
                # transformers 5 returns an output object; 4.x returned the tensor itself.
                features = output if isinstance(output, torch.Tensor) else output.pooler_output
            else:
                output = self.model(pixel_values=pixels)
                features = _pool(output)
            return features.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model_id": self.model_id, "family": "transformers",
                "model_type": self.model_type, "source": str(self.folder), "dim": self.dim,
                "pooling": self.pooling, "device": self.device, "text_tower": self.has_text_tower,
                "preprocess": self._preprocess.describe()}


def _pool(output: Any) -> Any:
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = output.last_hidden_state
    if hidden.dim() == 3:
        return hidden[:, 0]
    return hidden.mean(dim=tuple(range(2, hidden.dim())))
