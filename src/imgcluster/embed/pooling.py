"""How a transformer's outputs become one vector per image: the choices of ``EmbedConfig.pooling``.

The names and their help live in ``config.POOLINGS``; this module computes them. A choice the
model cannot give (``cls`` on SigLIP, which has no class token; ``pooler`` on ViT-MAE, which has
no pooler) is a ConfigError naming the choices that work.
"""

from __future__ import annotations

from typing import Any

from ..config import POOLINGS, check_pooling
from ..errors import ConfigError

__all__ = ["POOLINGS", "available_poolings", "check_pooling", "default_pooling", "pool", "prefix_tokens",
           "require_pooling"]

# Model types whose default is not "the model's own pooled output": DINOv2's class token is the
# feature of its paper's k-NN results; the GumGum article sums ViT-MAE's tokens (it has no pooler).
_DEFAULT_BY_TYPE = {"dinov2": "cls", "dinov2_with_registers": "cls", "vit_mae": "sum"}
_NO_CLASS_TOKEN = ("siglip", "siglip2", "swin", "swinv2")  # token sequences of patches only


def default_pooling(model_type: str, has_image_features: bool, output: Any) -> str:
    """The pooling a model gets when none is asked for: image-features for CLIP-like models, the
    per-family choice above, else the model's pooler, else the class token, else the spatial mean.

    ``output`` is the vision tower's output on a probe batch (its shapes decide the last fallbacks).
    """
    if has_image_features:
        return "image-features"
    if model_type in _DEFAULT_BY_TYPE:
        return _DEFAULT_BY_TYPE[model_type]
    if getattr(output, "pooler_output", None) is not None:
        return "pooler"
    return "cls" if output.last_hidden_state.dim() == 3 else "mean"


def prefix_tokens(config: Any) -> int:
    """Tokens before the patch tokens in the last hidden state: the class token and DINOv2's registers."""
    if config.model_type in _NO_CLASS_TOKEN:
        return 0
    vision = getattr(config, "vision_config", config)
    return 1 + int(getattr(vision, "num_register_tokens", 0) or 0)


def available_poolings(output: Any, prefix: int, has_image_features: bool) -> tuple[str, ...]:
    """The POOLINGS names this model can give, in POOLINGS order; ``output`` as for default_pooling."""
    can = {"image-features": has_image_features,
           "pooler": getattr(output, "pooler_output", None) is not None,
           "cls": output.last_hidden_state.dim() == 3 and prefix > 0,
           "mean": True, "sum": True}
    return tuple(name for name in POOLINGS if can[name])


def require_pooling(name: str, pooling: str, available: tuple[str, ...]) -> None:
    """Raise ConfigError, naming what works, when model ``name`` cannot pool with ``pooling``."""
    check_pooling(pooling)
    if pooling not in available:
        raise ConfigError(f"{name} cannot pool with {pooling!r}: {POOLINGS[pooling].split(' (')[0]} does not "
                          f"exist in this model. Choose one of: {', '.join(available)}, or leave it unset "
                          "for the model's default.")


def pool(output: Any, pooling: str, prefix: int) -> Any:
    """One vector per image, a torch tensor (n, dim), from a model output and a POOLINGS name.

    ``output`` is what ``get_image_features`` returned for image-features, else the vision tower's
    output (``last_hidden_state`` (n, tokens, d) or, for CNNs, (n, d, h, w)); ``prefix`` counts the
    class and register tokens. The pooling must be one of ``available_poolings``.
    """
    import torch

    if pooling in ("image-features", "pooler"):
        # transformers 5 returns an output object; 4.x returned get_image_features' tensor itself.
        pooled = output if isinstance(output, torch.Tensor) else output.pooler_output
        return pooled.flatten(1)
    hidden = output.last_hidden_state
    if hidden.dim() == 4:  # a CNN's feature map: every position is a patch, none is a class token
        hidden, prefix = hidden.flatten(2).transpose(1, 2), 0
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        return hidden[:, prefix:].mean(dim=1)
    return hidden.sum(dim=1)
