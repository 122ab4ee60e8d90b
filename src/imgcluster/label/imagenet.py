"""Names from an ImageNet classifier head: what a CNN trained on ImageNet thinks the cluster shows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import NameConfig
from ..errors import ConfigError
from ..store import ClusterName
from .base import ClusterView, NamingContext, merge_by_name, names_from_scores
from .vocabulary import imagenet_class_names

log = logging.getLogger(__name__)

_BATCH = 16


class ImageNetNamer:
    """Classifies each cluster's representative images with an ImageNet head (the bundled
    efficientnet-lite0's, whatever model the run used), averages the class probabilities over them,
    and names the cluster by its most probable class, kept distinct from the other clusters' names
    where one of its five best allows; confidence is that class's mean probability."""

    source = "imagenet"
    needs_embeddings = False

    def __init__(self, classifier: Any, class_names: Sequence[str], images_per_cluster: int = 8):
        self.classifier, self.class_names, self.images_per_cluster = classifier, class_names, images_per_cluster

    @classmethod
    def from_config(cls, config: NameConfig, context: NamingContext) -> "ImageNetNamer":
        classifier = context.load_classifier()
        if not callable(getattr(classifier, "classify", None)):
            raise ConfigError(f"{getattr(classifier, 'name', 'This model')} has no ImageNet classifier head. "
                              "Use --namer zero-shot (CLIP-like models) or --namer vlm.")
        return cls(classifier, imagenet_class_names(), config.images_per_cluster)

    def name(self, clusters: Sequence[ClusterView],
             progress: Callable[[int, int], None] | None = None) -> list[ClusterName]:
        means, named, failed = [], [], []
        for done, view in enumerate(clusters):
            if progress is not None:
                progress(done, len(clusters))
            probabilities = self.class_probabilities(view)
            if probabilities is None:
                failed.append(ClusterName(view.cluster, "", self.source,
                                          error="none of its representative images could be read"))
                continue
            means.append(probabilities.mean(axis=0))
            named.append(view.cluster)
        if progress is not None:
            progress(len(clusters), len(clusters))
        if not named:
            return failed
        terms, scores = merge_by_name(self.class_names, np.stack(means))
        return sorted(names_from_scores(named, scores, terms, self.source) + failed, key=lambda n: n.cluster)

    def class_probabilities(self, view: ClusterView) -> np.ndarray | None:
        """(m, 1000) ImageNet probabilities of the cluster's first readable representatives, or None."""
        pixels = []
        for i in range(min(self.images_per_cluster, len(view.paths))):
            try:
                pixels.append(self.classifier.preprocess(view.image(i, min_side=self.classifier.input_size)))
            except Exception as error:  # one unreadable image must not cost the cluster its name
                log.debug("cannot read %s for naming: %s", view.paths[i], error)
        if not pixels:
            return None
        return np.concatenate([self.classifier.classify(np.stack(pixels[start:start + _BATCH]))
                               for start in range(0, len(pixels), _BATCH)])
