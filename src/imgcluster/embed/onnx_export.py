"""Export a model's forward pass to ONNX once, quantise it, check it against PyTorch, and keep it
in the user's cache folder (``~/.cache/imgcluster/onnx/<key>/``, see ``jit_cache.user_cache_dir``).

The key names everything that decides the file: the model's ``model_id`` (its weights and
pooling), the input size, the backend and its version, the precision and how it was quantised.
Each folder holds ``model.onnx`` (what the backend runs), ``spec.json`` and ``check.json`` (the
cosine between this file's embeddings and float32 PyTorch's on ``CHECK_IMAGES`` photo crops).

The work runs in a child process (``python -m imgcluster.embed.onnx_export FOLDER``): it loads
torch and the model, which a run whose exported file is cached never does, so the run's own peak
memory stays the backend's; and an exporter that crashes takes only the child down (``auto`` then
falls back to torch). int8 calibration and the check use crops of scikit-learn's two sample
photos, not the user's images, so one exported file serves every collection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from ..jit_cache import user_cache_dir

log = logging.getLogger(__name__)

MODEL_FILE, SPEC_FILE, CHECK_FILE = "model.onnx", "spec.json", "check.json"
CALIBRATION_IMAGES = 256  # static int8: activation ranges from this many crops
CHECK_IMAGES = 16
EXPORT_TIMEOUT_S = 1800   # CLIP ViT-L/14 exports and quantises in minutes on two cores
_OPSET = 17


@dataclass(frozen=True)
class ExportSpec:
    """What decides an exported file; its ``key`` names the cache folder."""

    name: str                 # what load_model was given (registry name, HF id or folder)
    pooling: str | None
    model_id: str             # the PyTorch model's: its weights and pooling
    input_size: int
    backend: str
    backend_version: str
    precision: str            # float32 or int8
    quantisation: str         # none, static (calibrated on CALIBRATION_IMAGES crops) or dynamic

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()

    def folder(self) -> Path:
        return user_cache_dir() / "onnx" / self.key()


def exported(spec: ExportSpec) -> tuple[Path, dict[str, Any]]:
    """(the ONNX file for ``spec``, its check), exporting it in a child process when not cached.

    Raises ModelUnavailable with the child's last words when the export fails."""
    folder = spec.folder()
    if not (folder / CHECK_FILE).exists():
        _export_in_child(spec, folder)
    return folder / MODEL_FILE, json.loads((folder / CHECK_FILE).read_text())


def _export_in_child(spec: ExportSpec, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its final place and renamed: a killed export leaves no half folder under the key.
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        (work / SPEC_FILE).write_text(json.dumps(asdict(spec), indent=1))
        log.info("exporting %s for %s (%s), once: it is kept in %s", spec.name, spec.backend, spec.precision, folder)
        started = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
        try:
            done = subprocess.run([sys.executable, "-m", "imgcluster.embed.onnx_export", str(work)],
                                  capture_output=True, text=True, env=env, timeout=EXPORT_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise ModelUnavailable(f"Exporting {spec.name} for {spec.backend} took over {EXPORT_TIMEOUT_S} s; "
                                   "use --backend torch.") from error
        if done.returncode != 0 or not (work / CHECK_FILE).exists():
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1].rstrip(".")
            raise ModelUnavailable(f"Exporting {spec.name} for {spec.backend} failed: {last}. "
                                   "Use --backend torch (or report the message).")
        log.info("exported %s for %s in %.1f s", spec.name, spec.backend, time.perf_counter() - started)
        try:
            os.replace(work, folder)
        except OSError:  # another process exported the same key meanwhile: keep theirs
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)


def calibration_pixels(embedder: Any, n: int, seed: int) -> np.ndarray:
    """float32 (n, 3, H, W): ``n`` crops of scikit-learn's sample photos (a Chinese temple, a
    flower), 20-90% of the shorter side, some mirrored, brightness varied, preprocessed for ``embedder``."""
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(pixels) for pixels in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = []
    for index in range(n):
        photo = photos[index % len(photos)]
        width, height = photo.size
        side = int(min(width, height) * rng.uniform(0.2, 0.9))
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = Image.fromarray(np.clip(np.asarray(crop, np.float32) * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8))
        out.append(embedder.preprocess(crop))
    return np.stack(out)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def export_float32(module: Any, path: Path, input_size: int) -> None:
    """Write ``module`` (pixels → features) as ONNX with a free batch dimension.

    The TorchScript exporter (``dynamo=False``): the dynamo one needs onnxscript, and both give the
    same graph for these models."""
    import torch

    pixels = torch.zeros((2, 3, input_size, input_size), dtype=torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes, fixed here
        torch.onnx.export(module, (pixels,), str(path), dynamo=False, opset_version=_OPSET,
                          input_names=["pixels"], output_names=["features"],
                          dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}})


def quantise(source: Path, target: Path, how: str, calibration: np.ndarray | None) -> None:
    """int8 ``target`` from float32 ``source``: ``static`` (QDQ, per-channel weights, activation
    ranges from ``calibration``: what CNNs need, and what OpenVINO runs as int8) or ``dynamic``
    (weights only, activations quantised per batch: transformers' MatMuls)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    if how == "dynamic":
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
        return
    assert calibration is not None

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.start >= len(calibration):
                return None
            self.start += 8
            return {"pixels": calibration[self.start - 8:self.start]}

    # CalibMaxIntermediateOutputs bounds the calibrator's memory (it keeps every tensor of every
    # batch) by merging every so many batches; a count that divides the batches leaves nothing for
    # the last merge, which onnxruntime 1.31 refuses ("No data is collected").
    batches = -(-len(calibration) // 8)
    merge_every = next(k for k in range(6, batches + 2) if batches % k)
    quantize_static(str(prepared), str(target), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=_first_convolutions(prepared, FLOAT_CONVOLUTIONS),
                    extra_options={"CalibMaxIntermediateOutputs": merge_every})


# The first convolutions see the image at full resolution, where int8 lost the most: on 160 photo
# crops efficientnet-lite0's median cosine to float32 was 0.990 all int8 (lowest 0.925), 0.994 with
# the stem kept float32, 0.996 (lowest 0.974) with the stem and the first block's two; about 20%
# slower than all int8, still 4-6x torch (2 busy cores, onnxruntime 1.31).
FLOAT_CONVOLUTIONS = 3


def _first_convolutions(path: Path, count: int) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "Conv"][:count]


def build(work: Path) -> None:
    """The child's work: export, quantise and check the model ``work/spec.json`` names, into ``work``."""
    from .backends import BACKENDS
    from .registry import load_model

    spec = ExportSpec(**json.loads((work / SPEC_FILE).read_text()))
    embedder = load_model(spec.name, device="cpu", pooling=spec.pooling)
    if embedder.model_id != spec.model_id:
        raise ModelUnavailable(f"{spec.name} now loads as {embedder.model_id}, not {spec.model_id}")
    check = calibration_pixels(embedder, CHECK_IMAGES, seed=1)
    reference = embedder.embed(check)
    float_path = work / "float32.onnx"
    export_float32(embedder.network(), float_path, spec.input_size)
    if spec.quantisation == "none":
        float_path.rename(work / MODEL_FILE)
    else:
        calibration = (calibration_pixels(embedder, CALIBRATION_IMAGES, seed=0) if spec.quantisation == "static"
                       else None)
        quantise(float_path, work / MODEL_FILE, spec.quantisation, calibration)
    for leftover in work.glob("*.onnx"):
        if leftover.name != MODEL_FILE:
            leftover.unlink()
    run = BACKENDS[spec.backend]().load(work / MODEL_FILE)
    similarity = cosines(run(check), reference)
    (work / CHECK_FILE).write_text(json.dumps({
        "images": CHECK_IMAGES, "median_cosine": float(np.median(similarity)),
        "min_cosine": float(similarity.min())}, indent=1))


if __name__ == "__main__":
    build(Path(sys.argv[1]))
