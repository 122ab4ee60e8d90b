"""Zero-shot names: a CLIP/SigLIP text tower scores a vocabulary against each cluster's mean embedding."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import NameConfig
from ..errors import ConfigError
from ..store import ClusterName, Workspace
from .base import TOP, ClusterView, NamingContext, names_from_scores, softmax
from .vocabulary import TEMPLATES, load_vocabulary

log = logging.getLogger(__name__)

# CLIP's learned temperature sits at its cap of 100; it turns cosine gaps into usable probabilities.
LOGIT_SCALE = 100.0
_TEXT_BATCH = 256


def prompt_embeddings(text_vectors: np.ndarray, n_terms: int, n_templates: int) -> np.ndarray:
    """One vector per term (n_terms, d): the L2-normalised mean of its templates' unit vectors, given
    as (n_terms * n_templates, d) in term-major order."""
    grouped = text_vectors.reshape(n_terms, n_templates, -1).mean(axis=1)
    return grouped / np.maximum(np.linalg.norm(grouped, axis=1, keepdims=True), 1e-12)


def score(means: np.ndarray, terms: np.ndarray, scale: float = LOGIT_SCALE) -> np.ndarray:
    """Probabilities (c, n_terms) of each term for each cluster's mean embedding (c, d)."""
    means = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return softmax(scale * means @ terms.T)


class ZeroShotNamer:
    """Names each cluster by the vocabulary term whose prompts (``TEMPLATES``) lie nearest its mean
    image embedding in the run's own CLIP-like model; confidence is the softmax probability over
    the vocabulary; names are kept distinct across clusters where scores allow (see
    ``distinct_choice``). The vocabulary's text embeddings are cached in the workspace per model."""

    source = "zero-shot"
    needs_embeddings = True

    def __init__(self, embedder: Any, vocabulary: Sequence[str], templates: Sequence[str] = TEMPLATES,
                 workspace: Workspace | None = None, top: int = TOP):
        self.embedder, self.vocabulary, self.templates = embedder, list(vocabulary), tuple(templates)
        self.workspace, self.top = workspace, top

    @classmethod
    def from_config(cls, config: NameConfig, context: NamingContext) -> "ZeroShotNamer":
        embedder = context.load_embedder()
        if not callable(getattr(embedder, "embed_text", None)):
            raise ConfigError(f"The run's model {context.model.get('name')} has no text tower, so it cannot name "
                              "clusters zero-shot. Use --namer imagenet or --namer vlm, or cluster with a "
                              "CLIP/SigLIP model.")
        return cls(embedder, load_vocabulary(config.vocabulary), workspace=context.workspace)

    def name(self, clusters: Sequence[ClusterView],
             progress: Callable[[int, int], None] | None = None) -> list[ClusterName]:
        """Name ``clusters``; ``progress(done, total)`` counts the batches of vocabulary prompts
        embedded (none when the workspace has them cached), the slow part; scoring is one step."""
        usable = [view for view in clusters if view.mean_embedding is not None]
        names = [ClusterName(view.cluster, "", self.source, error="no embeddings for this cluster")
                 for view in clusters if view.mean_embedding is None]
        if not usable:
            return names
        terms = self.term_embeddings(progress)
        means = np.stack([np.asarray(view.mean_embedding, dtype=np.float32) for view in usable])
        if means.shape[1] != terms.shape[1]:
            raise ConfigError(f"The run's embeddings are {means.shape[1]}-d but the text tower gives "
                              f"{terms.shape[1]}-d vectors; zero-shot naming needs the run's own CLIP-like model.")
        names += names_from_scores([view.cluster for view in usable], score(means, terms), self.vocabulary,
                                   self.source, self.top)
        return sorted(names, key=lambda n: n.cluster)

    def term_embeddings(self, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(n_terms, d) unit vectors of the vocabulary, from the workspace cache when it has them;
        ``progress(done, total)`` counts the batches of prompts embedded otherwise."""
        key = self._cache_key()
        cached = self.workspace.cached_array("text-embeddings", key) if self.workspace is not None else None
        if cached is not None and cached.shape[0] == len(self.vocabulary):
            return _distinguishable(cached)
        sentences = [template.format(term) for term in self.vocabulary for template in self.templates]
        log.info("embedding %d prompts for %d vocabulary terms", len(sentences), len(self.vocabulary))
        starts = range(0, len(sentences), _TEXT_BATCH)
        batches = []
        for done, start in enumerate(starts):
            if progress is not None:
                progress(done, len(starts))
            batch = self.embedder.embed_text(sentences[start:start + _TEXT_BATCH])
            batches.append(np.asarray(batch, dtype=np.float32))
        if progress is not None:
            progress(len(starts), len(starts))
        vectors = np.concatenate(batches)
        terms = _distinguishable(prompt_embeddings(vectors, len(self.vocabulary), len(self.templates)))
        if self.workspace is not None:
            self.workspace.save_cached_array("text-embeddings", key, terms)
        return terms

    def _cache_key(self) -> str:
        content = json.dumps([getattr(self.embedder, "model_id", ""), self.templates, self.vocabulary])
        return hashlib.blake2b(content.encode(), digest_size=12).hexdigest()


def _distinguishable(terms: np.ndarray) -> np.ndarray:
    if np.ptp(terms, axis=0).max() < 1e-6:
        raise ConfigError("The model's text tower gives the same vector for every term, so it cannot tell them "
                          "apart (is its tokenizer missing?). Use --namer imagenet or --namer vlm.")
    return terms
