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

from ..errors import ConfigError, ModelUnavailable
from ..jit_cache import user_cache_dir
from .base import LazyDevice, autocast, model_input
from .pooling import available_poolings, check_pooling, default_pooling, pool, prefix_tokens, require_pooling
from .preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess

log = logging.getLogger(__name__)

_TEXT_TOWER_TYPES = ("clip", "siglip", "siglip2", "chinese_clip", "altclip")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "tokenizer.model",
                    "sentencepiece.bpe.model")
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
    if _maybe_cached(source):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(source, local_files_only=True))
        except Exception:
            log.debug("%s is not in the Hugging Face cache", source, exc_info=True)
    if allow_download and os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0"):
        try:
            log.info("downloading %s from the Hugging Face hub", source)
            return _download(source)
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


def _maybe_cached(source: str) -> bool:
    """False when the Hugging Face cache has no folder for ``source`` at all: then the hub's download
    code (half a second of imports on two cores, paid by every `cluster` that asks whether CLIP is
    here) is not loaded just to say so."""
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{source.replace('/', '--')}").is_dir()


def _download(source: str) -> Path:
    """Fetch config, preprocessor, tokenizer and one copy of the weights: most repos hold both
    model.safetensors and pytorch_model.bin, and fetching both doubles the download."""
    from huggingface_hub import snapshot_download

    common = ["*.json", "*.txt", "*.model"]
    folder = Path(snapshot_download(source, allow_patterns=[*common, "*.safetensors"]))
    if not any((folder / name).exists() for name in _WEIGHT_FILES):  # an older repo: .bin only
        folder = Path(snapshot_download(source, allow_patterns=[*common, "*.bin"]))
    return folder


def weights_present(source: str) -> bool:
    """True when ``source`` can be loaded without the network."""
    try:
        folder = locate(source, allow_download=False)
    except ModelUnavailable:
        return False
    return any((folder / name).exists() for name in _WEIGHT_FILES)


def _model_id(folder: Path, source: str) -> str:
    # The HF cache's layout is models--ORG--NAME/snapshots/COMMIT: there the commit names the weights
    # exactly. Any other folder (one merely having "snapshots" somewhere in its path included) is
    # named by a digest of its config and weights' sizes and times, so a change to it is seen.
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return f"hf:{source}@{folder.name[:12]}"
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


class HfImageModel(LazyDevice):
    """Any transformers image model, pooled as ``pooling`` says (see ``config.POOLINGS``).

    Unset, the pooling is the model's default: CLIP/SigLIP ``image-features``, DINOv2 ``cls``,
    ViT-MAE ``sum``, any other model its pooler, else its class token, else its spatial mean.
    ViT-MAE runs with ``mask_ratio`` 0: at 224 px it sees all 196 patches, so ``sum`` adds 197 tokens
    (the GumGum article's 50 were 49 unmasked patches + CLS under its 0.75 training mask ratio,
    a random subset per call; we keep every patch so the vectors are deterministic).

    Building it is lazy once the model has been seen: what the first load measured (poolings,
    dimension, preprocessing) is kept in the user's cache (``model_facts``), and torch, transformers
    and the weights are loaded on the first ``embed``, ``embed_text`` or ``network``. A process that
    finds every image cached, or embeds through an optimised backend, never loads them (CLIP's
    optimised path peaked above PyTorch's while both were loaded).
    """

    def __init__(self, source: str, name: str | None = None, device: str = "auto",
                 allow_download: bool = False, pooling: str | None = None):
        check_pooling(pooling)
        self.name = name or source
        self.source = source
        self.folder = locate(source, allow_download=allow_download)
        self._requested_device = device
        self._device: str | None = None
        self._model: Any = None
        self._config: Any = None
        weights_id = _model_id(self.folder, source)
        facts_key = _facts_key(self.folder, weights_id)
        facts = read_facts(facts_key, pooling)
        if facts is None:
            facts = self._measure(pooling)
            write_facts(facts_key, pooling, facts)
        self.model_type = facts["model_type"]
        self._prefix = int(facts["prefix"])
        self._preprocess = Preprocess(**{**facts["preprocess"], "mean": tuple(facts["preprocess"]["mean"]),
                                         "std": tuple(facts["preprocess"]["std"])})
        self.preprocess_spec = self._preprocess  # what GPU decoding reproduces (gpu_decode.py)
        self.input_size = self._preprocess.crop
        self.poolings, self.pooling = tuple(facts["poolings"]), facts["pooling"]
        self._has_text_features = bool(facts["has_text_features"])
        # Text vectors share only the image-features space; with another pooling they mean nothing here.
        self.has_text_tower = self._has_text_features and self.pooling == "image-features"
        self.model_id = f"{weights_id}:{self.pooling}"
        self.dim = int(facts["dim"])

    def _measure(self, pooling: str | None) -> dict[str, Any]:
        """Load the model and find what ``model_facts`` keeps: poolings, the chosen one, the dimension."""
        config = self._loaded_config()
        self._prefix = prefix_tokens(config)
        preprocess = _preprocess_for(self.folder, config)
        probe = np.zeros((1, 3, preprocess.crop, preprocess.crop), dtype=np.float32)
        self.model_type = config.model_type
        poolings, self.pooling = self._choose_pooling(pooling, probe)
        return {"model_type": config.model_type, "prefix": self._prefix,
                "preprocess": {"resize": preprocess.resize, "crop": preprocess.crop, "mean": list(preprocess.mean),
                               "std": list(preprocess.std), "resample": preprocess.resample},
                "poolings": list(poolings), "pooling": self.pooling,
                "has_text_features": hasattr(self.model, "get_text_features"),
                "dim": int(self.embed(probe).shape[1])}

    def _loaded_config(self) -> Any:
        if self._config is None:
            self._config = _load_config(self.folder)
        return self._config

    cpu_batch_size = 16  # CLIP ViT-B/32 on 2 CPU cores: 13 images/s at batch 1, 21 at 8, 19 at 16-64

    @property
    def model(self) -> Any:
        """The transformers model with its weights, loaded on first use."""
        if self._model is None:
            self._model = _load_weights(self.folder, self._loaded_config()).eval().to(self.device)
            log.debug("%s loaded on %s", self.name, self.device)
        return self._model

    def _choose_pooling(self, asked: str | None, probe: np.ndarray) -> tuple[tuple[str, ...], str]:
        """(the poolings this model can give, the one it will use): ``asked``, else the model's default."""
        tower_output = self._forward(probe, image_features=False)
        has_image_features = hasattr(self.model, "get_image_features")
        poolings = available_poolings(tower_output, self._prefix, has_image_features)
        pooling = asked or default_pooling(self.model_type, has_image_features, tower_output)
        require_pooling(self.name, pooling, poolings)
        return poolings, pooling

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._preprocess(image)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            output = self._forward(batch, image_features=self.pooling == "image-features")
            return pool(output, self.pooling, self._prefix).float().cpu().numpy()

    def network(self) -> Any:
        """The forward pass and pooling as one float32 CPU torch module, pixels (n, 3, H, W) → raw
        features (n, dim), ``embed``'s computation: what an optimised backend exports. Shares the
        loaded weights (moved to the CPU when the model runs elsewhere)."""
        import torch

        owner = self

        class Features(torch.nn.Module):
            def __init__(self, model: Any):
                super().__init__()
                self.model = model

            def forward(self, pixels: Any) -> Any:
                if owner.pooling == "image-features":
                    output = self.model.get_image_features(pixel_values=pixels)
                else:
                    tower = getattr(self.model, "vision_model", self.model)
                    noise = ({"noise": _identity_noise(tower.config, pixels)} if owner.model_type == "vit_mae"
                             else {})
                    output = tower(pixel_values=pixels, **noise)
                return pool(output, owner.pooling, owner._prefix)

        return Features(self.model.float().to("cpu")).eval()

    def _forward(self, batch: np.ndarray, image_features: bool) -> Any:
        """get_image_features' output, or else the vision tower's (hidden states and pooler output)."""
        import torch

        with torch.inference_mode(), autocast(self.device):
            pixels = model_input(batch, self.device)
            if image_features:
                return self.model.get_image_features(pixel_values=pixels)
            tower = getattr(self.model, "vision_model", self.model)
            if self.model_type == "vit_mae":
                return tower(pixel_values=pixels, noise=_identity_noise(tower.config, pixels))
            return tower(pixel_values=pixels)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text-tower embeddings (n, dim) of ``texts``, comparable with the image ones.

        Only CLIP-like models (CLIP, SigLIP) pooled with ``image-features`` have them; others raise
        ConfigError. The tokenizer is the one saved in the model's folder (ModelUnavailable if none).
        """
        import torch

        if not self.has_text_tower:
            raise ConfigError(self._why_no_text())
        if getattr(self, "_tokenizer", None) is None:
            self._tokenizer = _load_tokenizer(self.folder)
        text_config = getattr(self.model.config, "text_config", self.model.config)
        # SigLIP was trained on texts padded to the full length; CLIP pools at the end-of-text token.
        tokens = self._tokenizer(list(texts), padding="max_length" if self.model_type.startswith("siglip") else True,
                                 truncation=True, max_length=getattr(text_config, "max_position_embeddings", 77),
                                 return_tensors="pt")
        with torch.inference_mode():
            output = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()})
            features = output if isinstance(output, torch.Tensor) else output.pooler_output
        vectors = features.float().cpu().numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _why_no_text(self) -> str:
        if self._has_text_features:
            return (f"{self.name} pools images with {self.pooling!r}, a space its text tower does not share; "
                    "load it with pooling='image-features' (the default) to embed text.")
        return (f"{self.name} ({self.model_type}) has no text tower; only CLIP-like models such as "
                "clip-vit-b32 or siglip-base embed text.")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model_id": self.model_id, "family": "transformers",
                "model_type": self.model_type, "source": str(self.folder), "dim": self.dim,
                "pooling": self.pooling, "poolings": list(self.poolings),
                # Not loaded: every image came from the cache or an optimised backend embedded them.
                "device": self._device or "not loaded",
                "text_tower": self.has_text_tower,
                "preprocess": self._preprocess.describe()}


FACTS_VERSION = 1  # bump when what ``_measure`` keeps changes


def _facts_key(folder: Path, weights_id: str) -> str:
    """What ``model_facts`` are keyed by: the weights' id and the preprocessing settings' bytes (a
    local folder's preprocessor_config.json can change without its weights)."""
    processor = folder / "preprocessor_config.json"
    settings = processor.read_bytes() if processor.exists() else b""
    return f"{weights_id}|{hashlib.blake2b(settings, digest_size=8).hexdigest()}"


def _facts_path(weights_id: str, pooling: str | None) -> Path:
    from importlib.metadata import PackageNotFoundError, version

    try:  # another transformers may pool or name outputs differently
        transformers_version = version("transformers")
    except PackageNotFoundError:
        transformers_version = "none"
    try:  # another imgcluster may choose poolings differently
        own_version = version("imgcluster")
    except PackageNotFoundError:
        own_version = "source"
    key = f"{FACTS_VERSION}|{weights_id}|{pooling}|{transformers_version}|{own_version}"
    return user_cache_dir() / "model_facts" / f"{hashlib.blake2b(key.encode(), digest_size=10).hexdigest()}.json"


def read_facts(weights_id: str, pooling: str | None) -> dict[str, Any] | None:
    """What an earlier load of these weights measured (see ``HfImageModel._measure``), or None."""
    path = _facts_path(weights_id, pooling)
    try:
        facts = json.loads(path.read_text())
        Preprocess(**facts["preprocess"])
        return facts if all(key in facts for key in ("model_type", "prefix", "poolings", "pooling", "dim",
                                                      "has_text_features")) else None
    except (OSError, ValueError, TypeError, KeyError):  # absent, or damaged: measure again
        return None


def write_facts(weights_id: str, pooling: str | None, facts: dict[str, Any]) -> None:
    """Keep ``facts`` for the next process; a cache that cannot be written only costs a load next time."""
    path = _facts_path(weights_id, pooling)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(facts))
        partial.replace(path)
    except OSError as error:
        log.info("could not keep what %s measured in %s (%s)", weights_id, path.parent, error)


def _load_config(folder: Path) -> Any:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type == "vit_mae":
        config.mask_ratio = 0.0  # the training-time mask would hide 75% of the image, at random
    return config


def _load_weights(folder: Path, config: Any) -> Any:
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(folder, config=config, local_files_only=True)
    except OSError as error:
        raise ModelUnavailable(f"Could not load the weights in {folder}: {error}") from error


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    # Without these files AutoTokenizer quietly builds an empty vocabulary: every text alike.
    if not any((folder / name).exists() for name in _TOKENIZER_FILES):
        raise ModelUnavailable(f"{folder} holds no tokenizer files, so its text tower cannot be used; "
                               "save the model's tokenizer there with `save_pretrained`.")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except ImportError as error:  # SigLIP's sentencepiece tokenizer, when sentencepiece is missing
        raise ModelUnavailable(f"The tokenizer in {folder} needs a package that is not installed: "
                               f"{str(error).strip().split('. ')[0]}. Install it (SigLIP: `pip install sentencepiece`) "
                               "to embed text.") from error
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"{folder} holds no usable tokenizer ({error}); save the model's "
                               "tokenizer there with `save_pretrained`.") from error


def _identity_noise(config: Any, pixels: Any) -> Any:
    """ViT-MAE shuffles patches by sorting this noise; 0, 1, 2 … keeps them in place, so equal images
    give equal vectors whatever else is in the batch."""
    import torch

    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    n_patches = (pixels.shape[2] // patch) * (pixels.shape[3] // patch)
    return torch.arange(n_patches, dtype=torch.float32, device=pixels.device).expand(pixels.shape[0], -1)
