"""Embedding: a registry of image models and a batched, resumable runner."""

from .base import Embedder, check_device, pick_device
from .registry import (MODELS, ModelSpec, check_name, load_model, recorded_settings, resolve_name,
                       weights_available)
from .runner import EmbedReport, embed_records, normalise

__all__ = ["MODELS", "EmbedReport", "Embedder", "ModelSpec", "check_device", "check_name", "embed_records",
           "load_model", "normalise", "pick_device", "recorded_settings", "resolve_name",
           "weights_available"]
