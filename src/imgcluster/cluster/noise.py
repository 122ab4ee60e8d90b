"""What to do with images no cluster claims: keep them apart, or attach the ones that clearly lean
towards a cluster.

Attaching asks the same question the predictor asks of a new image: which cluster do its nearest
clustered images vote for, and with what probability (their similarity-weighted vote times their
own membership probabilities)? A noise image joins that cluster when the probability reaches the
threshold, keeping that probability as its membership; one less similar to its nearest clustered
image than half the typical clustered image is to its own nearest stays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import NOISE
from ..store.shards import ShardedVectors
from .predictor import Predictor

_CHUNK = 10_000


@dataclass(frozen=True)
class Attachment:
    """New labels and probabilities (n,), and which images were attached (n,) bool."""

    labels: np.ndarray
    probabilities: np.ndarray
    attached: np.ndarray


def attach_noise(vectors: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                 seed: int = 0) -> Attachment:
    """Attach unclustered images (label -1) of L2-normalised ``vectors`` (n, d) to the cluster their
    nearest clustered images vote for, when the vote's probability is at least ``threshold``."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    probabilities = np.asarray(probabilities, dtype=np.float64).copy()
    attached = np.zeros(len(labels), dtype=bool)
    noise = np.flatnonzero(labels == NOISE)
    clustered = np.flatnonzero(labels != NOISE)
    if len(noise) == 0 or len(clustered) == 0:
        return Attachment(labels, probabilities, attached)
    # Noise lies in sparse regions by definition, so only the lenient half-the-median bar applies.
    # A view on the shards stays a view (rows read as the index is built), an array is indexed.
    members = vectors.subset(clustered) if isinstance(vectors, ShardedVectors) else vectors[clustered]
    predictor = Predictor(outlier_quantile=None, seed=seed).fit(
        members, labels[clustered], probabilities[clustered], np.zeros((len(clustered), 2)), clustered)
    for start in range(0, len(noise), _CHUNK):
        rows = noise[start:start + _CHUNK]
        vote = predictor.predict(vectors[rows])
        joins = (vote.clusters != NOISE) & (vote.membership_probability >= threshold)
        labels[rows[joins]] = vote.clusters[joins]
        probabilities[rows[joins]] = vote.membership_probability[joins]
        attached[rows[joins]] = True
    return Attachment(labels, probabilities, attached)
