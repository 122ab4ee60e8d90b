"""Zero-shot names: a CLIP/SigLIP text tower scores a vocabulary against a cluster's members, hedged up
the vocabulary's hierarchy."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..config import NameConfig
from ..errors import ConfigError
from ..store import ClusterName, Workspace
from .appearance import looks
from .base import TOP, ClusterView, NamingContext, softmax
from .hierarchy import (
    Hierarchy,
    hedged_cluster_names,
    name_cluster,
    vocabulary_hierarchy,
)
from .vocabulary import TEMPLATES, load_sections, load_vocabulary

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
    """Scores the vocabulary against each of ``images_per_cluster`` members of a cluster (its sample
    by content hash; the cluster's mean embedding where a view has no sample): each term's
    probability is the softmax over the vocabulary of the cosine between the member and the term's
    prompts (``TEMPLATES``) in the run's own CLIP-like model. The probabilities are hedged up the
    vocabulary's hierarchy as the ImageNet namer's are up WordNet (see ``hierarchy``): ImageNet's
    classes sit in WordNet, the broad words under their section of the vocabulary ("food and
    drink"), so a cluster is named by a term when sure, a broader node when not, "mixed: …" or
    "unrecognised" else, never two alike. Its bars and confidence words are the ImageNet head's,
    carried over, not measured for CLIP. The vocabulary's text embeddings are cached in the
    workspace per model."""

    source = "zero-shot"
    needs_embeddings = True

    def __init__(self, embedder: Any, vocabulary: Sequence[str], templates: Sequence[str] = TEMPLATES,
                 workspace: Workspace | None = None, top: int = TOP, sections: Mapping[str, str] | None = None,
                 images_per_cluster: int = 16):
        self.embedder, self.vocabulary, self.templates = embedder, list(vocabulary), tuple(templates)
        self.workspace, self.top, self.images_per_cluster = workspace, top, images_per_cluster
        self.sections = dict(sections or {})  # casefolded term → its section's heading

    @classmethod
    def from_config(cls, config: NameConfig, context: NamingContext) -> "ZeroShotNamer":
        embedder = context.load_embedder()
        if not callable(getattr(embedder, "embed_text", None)):
            raise ConfigError(f"The run's model {context.model.get('name')} has no text tower, so it cannot name "
                              "clusters zero-shot. Use --namer imagenet or --namer vlm, or cluster with a "
                              "CLIP/SigLIP model.")
        return cls(embedder, load_vocabulary(config.vocabulary), workspace=context.workspace,
                   sections=load_sections(config.vocabulary), images_per_cluster=config.images_per_cluster)

    @functools.cached_property
    def hierarchy(self) -> Hierarchy:
        """The vocabulary's is-a tree (see ``hierarchy.vocabulary_hierarchy``)."""
        return vocabulary_hierarchy(self.vocabulary, self.sections)

    def name(self, clusters: Sequence[ClusterView], progress: Callable[[int, int], None] | None = None,
             keep: Mapping[int, str] | None = None) -> list[ClusterName]:
        """Name ``clusters``; ``progress(done, total)`` counts the batches of vocabulary prompts
        embedded (none when the workspace has them cached), the slow part; scoring is one step.
        ``keep``: clusters keeping a name from an earlier run (see ``ImageNetNamer.name``)."""
        usable = [view for view in clusters if view.mean_embedding is not None]
        names = [ClusterName(view.cluster, "", self.source, error="no embeddings for this cluster")
                 for view in clusters if view.mean_embedding is None and view.cluster not in (keep or {})]
        if not usable:
            return names
        terms = self.term_embeddings(progress)
        if usable[0].mean_embedding.shape[-1] != terms.shape[1]:  # type: ignore[union-attr]
            raise ConfigError(f"The run's embeddings are {usable[0].mean_embedding.shape[-1]}-d but the text "  # type: ignore[union-attr]
                              f"tower gives {terms.shape[1]}-d vectors; zero-shot naming needs the run's own "
                              "CLIP-like model.")
        hedged, scores = [], []
        for view in usable:
            probabilities = score(self.members(view), terms)
            hedged.append(name_cluster(probabilities, self.hierarchy))
            scores.append(self.hierarchy.scores(probabilities.mean(axis=0, keepdims=True))[0])
        names += hedged_cluster_names([view.cluster for view in usable], hedged, scores, self.hierarchy, self.source,
                                      keep, functools.cache(lambda i: looks(usable[i])))
        return sorted(names, key=lambda n: n.cluster)

    def members(self, view: ClusterView) -> np.ndarray:
        """(m, d) embeddings of the first ``images_per_cluster`` members of the view's sample, or
        (1, d), the cluster's mean embedding, where the view has none."""
        sample = view.sample.embeddings if view.sample is not None else None
        if sample is not None and len(sample):
            return np.asarray(sample[:self.images_per_cluster], dtype=np.float32)
        return np.asarray(view.mean_embedding, dtype=np.float32).reshape(1, -1)

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
