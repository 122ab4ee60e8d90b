"""Inference backends: the same model run by PyTorch, ONNX Runtime or OpenVINO (``EmbedConfig.backend``).

An optimised backend runs the model's forward pass exported to ONNX (``onnx_export.py``), on the
CPU, in the precision measured fastest for the model's family (bench/embed.py, docs/benchmarks.md):

==============  =====================================  =======================================
backend         CNN (efficientnet-lite0)               transformer (CLIP, DINOv2, …)
==============  =====================================  =======================================
onnxruntime     int8, static (calibrated) QDQ          int8, dynamic (weights; MatMuls)
openvino        int8, the same QDQ file                float32 (its dynamic int8 ran slower)
==============  =====================================  =======================================

Its vectors are cached under their own ``model_id`` (the PyTorch one plus ``:backend-precision``),
so vectors from different backends never mix in a run. ``auto`` takes the first installed backend
of ``AUTO_ORDER`` whose embeddings match float32 PyTorch's within ``TOLERANCE`` on the check images
(measured once per exported file, kept beside it), else PyTorch, saying why in the log.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..config import BACKEND_NAMES, check_backend
from ..errors import ConfigError, ModelUnavailable
from .base import Embedder
from .onnx_export import ExportSpec, exported

log = logging.getLogger(__name__)

# Embeddings an optimised backend must match, as cosines to float32 PyTorch's on the check images.
TOLERANCE = {"median_cosine": 0.99, "min_cosine": 0.95}
AUTO_ORDER = ("onnxruntime", "openvino")  # fastest first on both families (docs/benchmarks.md)
INSTALL_HINT = "pip install 'imgcluster[fast]'"

Run = Callable[[np.ndarray], np.ndarray]


def cpu_threads() -> int:
    """Threads an optimised backend computes with: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Backend(Protocol):
    """An ONNX runtime: whether it is installed, its version, its precision per model family, and
    how it loads an exported file into a function float32 (n, 3, H, W) → float32 (n, dim)."""

    name: str

    def available(self) -> bool: ...
    def version(self) -> str: ...
    def precision(self, family: str) -> str: ...
    def load(self, path: Path) -> Run: ...


class OnnxRuntimeBackend:
    """Microsoft's ONNX Runtime on the CPU. Its worker threads wait passively (spinning off): on two
    cores shared with decoding threads and other processes, spinning threads steal the cores the work
    needs (the rule OMP_WAIT_POLICY=PASSIVE applies to torch, ``imgcluster/__init__.py``)."""

    name = "onnxruntime"

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def version(self) -> str:
        import onnxruntime

        return str(onnxruntime.__version__)

    def precision(self, family: str) -> str:
        return "int8"

    def load(self, path: Path) -> Run:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda pixels: session.run(None, {"pixels": pixels})[0]


class OpenVinoBackend:
    """Intel's OpenVINO on the CPU, latency-hinted (one request at a time, all cores on it). int8 for
    CNNs only when onnxruntime is installed too: its quantiser writes the QDQ file."""

    name = "openvino"

    def available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def version(self) -> str:
        import openvino

        return str(openvino.__version__).split("-")[0]

    def precision(self, family: str) -> str:
        can_quantise = importlib.util.find_spec("onnxruntime") is not None
        return "int8" if family == "efficientnet" and can_quantise else "float32"

    def load(self, path: Path) -> Run:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {
            "INFERENCE_NUM_THREADS": cpu_threads(), "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        return lambda pixels: np.array(request.infer({0: pixels})[0], dtype=np.float32)


BACKENDS: dict[str, type[Backend]] = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}
assert set(BACKENDS) | {"auto", "torch"} == set(BACKEND_NAMES)


def quantisation(family: str, precision: str) -> str:
    """How a family reaches ``precision``: CNNs need calibrated activation ranges (dynamic int8
    convolutions ran 10x slower than float32 in onnxruntime), transformers do well with dynamic."""
    if precision == "float32":
        return "none"
    return "static" if family == "efficientnet" else "dynamic"


@dataclass(frozen=True)
class Exported:
    """A model exported for a backend: the file, its precision, and its check against PyTorch."""

    backend: Backend
    precision: str
    path: Path
    check: dict[str, Any]


class OptimisedEmbedder:
    """A PyTorch embedder's model run by an optimised backend on the CPU. Preprocessing, names and
    everything but ``embed`` are the PyTorch embedder's (text towers and the ImageNet classifier
    still run in PyTorch, loaded only when asked for: both inner embedders build their PyTorch
    model lazily, so a process that only embeds images here never imports torch)."""

    device = "cpu"  # never decoded on a GPU (gpu_decode asks)

    def __init__(self, inner: Embedder, exported: Exported):
        self.inner, self.backend, self.precision = inner, exported.backend, exported.precision
        self.path, self.check = exported.path, exported.check
        self.name, self.dim, self.input_size = inner.name, inner.dim, inner.input_size
        # The CPU's batch size without resolving the inner model's device (that imports torch).
        self.batch_size = getattr(inner, "cpu_batch_size", None) or inner.batch_size
        # Its own cache key: int8 vectors are close to float32 ones, not equal, and must not mix.
        self.model_id = f"{inner.model_id}:{self.backend.name}-{self.precision}"
        try:
            self._run = self.backend.load(self.path)
        except Exception as error:  # a damaged or truncated cached file: the runtimes raise their own types
            raise ModelUnavailable(f"{self.backend.name} could not load {self.path} ({str(error).splitlines()[0]}); "
                                   f"delete {self.path.parent} to export it again, or use --backend torch.") from error

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.inner.preprocess(image)

    def embed(self, batch: Any) -> np.ndarray:
        if not isinstance(batch, np.ndarray):  # a tensor (the runner's GPU path never comes here)
            batch = batch.cpu().numpy()
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "model_id": self.model_id, "device": "cpu", "backend": self.backend.name,
                "backend_version": self.backend.version(), "precision": self.precision,
                "check": {**self.check, "file": str(self.path)}}

    def __getattr__(self, name: str) -> Any:  # embed_text, pooling, has_text_tower …: the PyTorch model's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def family_of(embedder: Embedder) -> str:
    return str(embedder.describe().get("family", "transformers"))


def export_for(embedder: Embedder, backend_name: str, precision: str = "auto") -> Exported:
    """``embedder`` exported for the named backend and checked (or found in the cache).

    ``precision`` auto takes the backend's measured choice for the family. Raises ModelUnavailable
    when the backend is not installed or the export fails."""
    backend = BACKENDS[backend_name]()
    if not backend.available():
        raise ModelUnavailable(f"The {backend_name} backend is not installed. Install it with `{INSTALL_HINT}`, "
                               "or use --backend torch.")
    family = family_of(embedder)
    chosen = backend.precision(family) if precision == "auto" else precision
    if chosen == "int8" and importlib.util.find_spec("onnxruntime") is None:
        raise ModelUnavailable(f"int8 needs onnxruntime's quantiser; install it with `{INSTALL_HINT}`, or set "
                               "embed.precision=float32.")
    spec = ExportSpec(name=embedder.name, pooling=getattr(embedder, "pooling", None), model_id=embedder.model_id,
                      input_size=embedder.input_size, backend=backend_name, backend_version=backend.version(),
                      precision=chosen, quantisation=quantisation(family, chosen))
    path, check = exported(spec)
    return Exported(backend, chosen, path, check)


def within_tolerance(check: dict[str, Any]) -> bool:
    return all(check.get(measure, -1.0) >= bound for measure, bound in TOLERANCE.items())


def _runs_on_cpu(device: str) -> bool:
    """Whether ``device`` means the CPU, deciding ``auto`` without importing torch where no GPU can be
    (no NVIDIA driver, not Apple silicon)."""
    if device != "auto":
        return device == "cpu"
    gpu_possible = Path("/proc/driver/nvidia").exists() or (sys.platform == "darwin" and os.uname().machine == "arm64")
    if not gpu_possible:
        return True
    from .base import pick_device

    return pick_device("auto") == "cpu"


def with_backend(embedder: Embedder, backend: str = "torch", precision: str = "auto",
                 device: str = "auto") -> Embedder:
    """``embedder`` run by ``backend`` (``EmbedConfig.backend``): torch gives it back as it is; a named
    backend runs it on the CPU (a ConfigError for a GPU ``device``); auto picks as the module says."""
    check_backend(backend, precision)
    if backend == "torch":
        return embedder
    if backend != "auto":
        if not _runs_on_cpu(device):
            raise ConfigError(f"The {backend} backend runs on the CPU; use --device cpu, or --backend torch "
                              f"to run on {device}.")
        found = export_for(embedder, backend, precision)
        if not within_tolerance(found.check):
            log.warning("%s with %s (%s) is outside the tolerance (median cosine to float32 PyTorch %.4f, "
                        "lowest %.4f); using it as asked", embedder.name, backend, found.precision,
                        found.check["median_cosine"], found.check["min_cosine"])
        return OptimisedEmbedder(embedder, found)
    if not _runs_on_cpu(device):
        return embedder
    return _auto(embedder, precision)


def _auto(embedder: Embedder, precision: str) -> Embedder:
    reasons = []
    for name in AUTO_ORDER:
        if not BACKENDS[name]().available():
            reasons.append(f"{name} is not installed")
            continue
        try:
            found = export_for(embedder, name, precision)
        except ModelUnavailable as error:
            reasons.append(str(error))
            continue
        if within_tolerance(found.check):
            log.info("backend: %s (%s) for %s; median cosine to float32 PyTorch %.4f", name, found.precision,
                     embedder.name, found.check["median_cosine"])
            try:
                return OptimisedEmbedder(embedder, found)
            except ModelUnavailable as error:  # a damaged cached file
                reasons.append(str(error))
                continue
        reasons.append(f"{name} ({found.precision}) is outside the tolerance: median cosine "
                       f"{found.check['median_cosine']:.4f}, lowest {found.check['min_cosine']:.4f}")
    missing = all(reason.endswith("not installed") for reason in reasons)
    log.log(logging.INFO if missing else logging.WARNING, "backend: torch for %s (%s)%s", embedder.name,
            "; ".join(reasons), f"; `{INSTALL_HINT}` adds the faster ones" if missing else "")
    return embedder
