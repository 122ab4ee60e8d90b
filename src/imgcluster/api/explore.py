"""Looking around a run: an image's nearest neighbours, filing uploaded bytes, text search. Used by
the web app; each works on a loaded :class:`RunPredictor` so one load serves many requests."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from ..cluster import NOISE
from ..embed import normalise
from ..errors import ConfigError, ModelUnavailable
from ..neighbours import search
from ..scan import load_rgb
from .predict import FiledImage, RunPredictor, scan_refusal, unusable_reason


@dataclass(frozen=True)
class Neighbour:
    """An image of the run near a query: catalogue id, cosine similarity, and its cluster in the run."""

    image_id: int
    similarity: float
    cluster: int


def neighbours(predictor: RunPredictor, vector: np.ndarray, k: int = 12, exclude: int | None = None) -> list[Neighbour]:
    """The ``k`` images of the run nearest an L2-normalised embedding (d,), best first; ``exclude``
    leaves out one image id (the query itself)."""
    index = predictor.predictor
    k_search = min(k + (exclude is not None), len(index.image_ids_))
    similarity, rows = search(index.index_, np.atleast_2d(vector), k_search)
    found = []
    for score, row in zip(similarity[0].tolist(), rows[0].tolist()):
        if row < 0 or not index.active_[row] or int(index.image_ids_[row]) == exclude:
            continue
        found.append(Neighbour(int(index.image_ids_[row]), float(score), int(index.clusters_[row])))
    return found[:k]


def file_bytes(predictor: RunPredictor, data: bytes, filename: str = "upload", k: int = 12
               ) -> tuple[FiledImage, list[Neighbour]]:
    """File an uploaded image (its bytes) into the run's clusters: where it goes, and its ``k``
    nearest images. A file that cannot be decoded comes back skipped, with the reason."""
    suffix = os.path.splitext(filename)[1][:10] if "." in filename else ""
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(data)
        handle.flush()
        embedder = predictor.embedder  # a missing model is an error, not a skip
        refused = scan_refusal(handle.name, predictor.scan_config)
        if refused is not None:
            return FiledImage(filename, "skipped", NOISE, 0.0, float("nan"), float("nan"), None, None, refused), []
        try:
            pixels = embedder.preprocess(load_rgb(handle.name, min_side=embedder.input_size))
        except Exception as error:  # a damaged upload is data, not a crash
            reason = unusable_reason(handle.name, error)
            return FiledImage(filename, "skipped", NOISE, 0.0, float("nan"), float("nan"), None, None, reason), []
    vector = normalise(embedder.embed(pixels[None]))
    filed = predictor.filed_image(filename, predictor.predict_vectors(vector), 0)
    return filed, neighbours(predictor, vector[0], k)


def text_search(predictor: RunPredictor, text: str, k: int = 24) -> list[Neighbour]:
    """The run's images nearest a text query, for models with a text tower (CLIP, SigLIP)."""
    text = " ".join(text.split())
    if not text:
        raise ConfigError("Type what to look for, e.g. 'a red car'.")
    embedder = predictor.embedder
    if not callable(getattr(embedder, "embed_text", None)):
        raise ModelUnavailable(f"Run {predictor.record.key} was embedded with {predictor.record.model_name}, "
                               "which has no text tower; text search needs a CLIP-like model "
                               "(e.g. `imgcluster cluster PATH --model clip-vit-b32`).")
    vector = normalise(np.asarray(embedder.embed_text([text]), dtype=np.float32))
    return neighbours(predictor, vector[0], k)
