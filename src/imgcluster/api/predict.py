"""Filing new images into a run's clusters with its persisted predictor."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import NOISE
from ..cluster.predictor import Prediction, Predictor
from ..embed import check_device, normalise
from ..errors import ConfigError
from ..scan import load_rgb, sniff
from ..store import RunRecord
from .steps import _reload_run_model, open_workspace

# -- filing new images ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FiledImage:
    """Where a new image goes in a run: ``status`` is assigned, unassigned or skipped."""

    path: str
    status: str
    cluster: int
    membership_probability: float
    x: float
    y: float
    nearest_path: str | None
    nearest_similarity: float | None
    reason: str


class RunPredictor:
    """A run's persisted predictor, with the run's model loaded on first use: load once, predict many."""

    def __init__(self, record: RunRecord, predictor: Predictor, paths_by_id: dict[int, str], device: str = "auto"):
        self.record, self.predictor, self.paths_by_id, self.device = record, predictor, paths_by_id, device
        self._embedder: Any = None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = _reload_run_model(self.record, self.device)
        return self._embedder

    def predict_vectors(self, vectors: np.ndarray) -> Prediction:
        """File L2-normalised embeddings (m, d) of the run's model."""
        return self.predictor.predict(vectors)

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], batch_size: int | None = None
                      ) -> list[FiledImage]:
        """Decode, embed and file image files; unreadable ones come back as skipped, with the reason.
        ``batch_size`` unset uses the model's own choice for its device."""
        paths = [str(Path(p).expanduser().resolve()) for p in paths]
        embedder = self.embedder  # outside the per-file guard: a missing model is an error, not a skip
        batch_size = batch_size or embedder.batch_size
        results: dict[str, FiledImage] = {}
        for start in range(0, len(paths), batch_size):
            pixels, usable = [], []
            for path in paths[start:start + batch_size]:
                if not Path(path).is_file():  # opening a FIFO would wait forever; a device never ends
                    results[path] = _skipped_file(path, _not_a_file(path))
                    continue
                try:
                    pixels.append(embedder.preprocess(load_rgb(path, min_side=embedder.input_size)))
                    usable.append(path)
                except Exception as error:  # a damaged file is data, not a crash
                    results[path] = _skipped_file(path, _unusable_reason(path, error))
            if not usable:
                continue
            prediction = self.predict_vectors(normalise(embedder.embed(np.stack(pixels))))
            for i, path in enumerate(usable):
                cluster_id = int(prediction.clusters[i])
                results[path] = FiledImage(
                    path, "assigned" if cluster_id != NOISE else "unassigned", cluster_id,
                    float(prediction.membership_probability[i]), float(prediction.x[i]), float(prediction.y[i]),
                    self.paths_by_id.get(int(prediction.nearest_image_id[i])),
                    float(prediction.nearest_similarity[i]), prediction.reasons[i])
        return [results[p] for p in paths]


def _unusable_reason(path: str, error: Exception) -> str:
    """The scan's own words for a file it would skip, else the decoder's."""
    sniffed = sniff(path)
    return sniffed.skip_reason if sniffed.status != "ok" and sniffed.skip_reason else f"cannot decode: {error}"


def _not_a_file(path: str) -> str:
    """Why ``path`` cannot be filed without opening it (``Path.is_file`` is False for it)."""
    where = Path(path).expanduser()
    if not where.exists():
        return f"{path} does not exist"
    if where.is_dir():
        return f"{path} is a folder, not an image file (a glob such as {where / '*.jpg'} gives its images)"
    return f"{path} is not a regular file (a pipe, socket or device)"


def _skipped_file(path: str, reason: str) -> FiledImage:
    return FiledImage(path, "skipped", NOISE, 0.0, float("nan"), float("nan"), None, None, reason)


def load_predictor(key: str | None = None, *, path: str | os.PathLike[str] | None = None,
                   workspace: str | os.PathLike[str] | None = None, device: str = "auto") -> RunPredictor:
    """The persisted predictor of a run (the newest when ``key`` is None), ready to file new images."""
    ws = open_workspace(path, workspace=workspace)
    try:
        record = ws.run(key)
        predictor = Predictor.from_state(*ws.read_predictor(record.key))
        paths_by_id = {r.id: r.path for r in ws.images(ids=predictor.image_ids_.tolist())}
    finally:
        ws.close()
    return RunPredictor(record, predictor, paths_by_id, device)


def predict(paths: Sequence[str | os.PathLike[str]], *, run: str | None = None,
            path: str | os.PathLike[str] | None = None, workspace: str | os.PathLike[str] | None = None,
            device: str = "auto") -> list[FiledImage]:
    """File image files into a run's clusters (the newest run when ``run`` is None) without refitting.

    ConfigError, before any work, when a path is missing or not a regular file."""
    for file in paths:
        if not Path(file).expanduser().is_file():
            raise ConfigError(f"{_not_a_file(str(file))}. Give image files to file into the run.")
    check_device(device)
    return load_predictor(run, path=path, workspace=workspace, device=device).predict_files(paths)
