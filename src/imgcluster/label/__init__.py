"""Namers: clusters → names, each stored with its source and confidence.

``NAMERS`` maps the user-facing name to the class; ``auto`` picks one from the run's model. Manual
names are not a namer: the user gives them (``imgcluster name``) and they win over every source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import NameConfig
from ..errors import UnknownName
from .base import MANUAL, ClusterView, Namer, NamingContext, NoNamer, choose_names, distinct_choice
from .imagenet import ImageNetNamer
from .vlm import VlmEndpoint, VlmNamer
from .zeroshot import ZeroShotNamer

NAMERS: dict[str, type] = {"imagenet": ImageNetNamer, "zero-shot": ZeroShotNamer, "vlm": VlmNamer, "none": NoNamer}


def resolve_namer(name: str, model: Mapping[str, Any]) -> str:
    """Turn ``auto`` into a namer for the run's model: imagenet for efficientnet-lite0, zero-shot for
    a model with a text tower, none otherwise. The VLM is never chosen automatically."""
    if name != "auto":
        check_namer(name)
        return name
    if model.get("family") == "efficientnet":
        return "imagenet"
    if model.get("text_tower"):
        return "zero-shot"
    return "none"


def check_namer(name: str) -> None:
    """Raise UnknownName now, before any work, when ``name`` names no namer."""
    if name != "auto" and name not in NAMERS:
        raise UnknownName(f"No namer called {name!r}. Choose one of: auto, {', '.join(sorted(NAMERS))}.")


def make_namer(name: str, config: NameConfig, context: NamingContext) -> Namer:
    """A namer by registry name (or ``auto``), built from the naming settings and the run."""
    return NAMERS[resolve_namer(name, context.model)].from_config(config, context)  # type: ignore[no-any-return]


__all__ = ["MANUAL", "NAMERS", "ClusterView", "ImageNetNamer", "Namer", "NamingContext", "NoNamer", "VlmEndpoint",
           "VlmNamer", "ZeroShotNamer", "check_namer", "choose_names", "distinct_choice", "make_namer",
           "resolve_namer"]
