"""Optimised backends (``EmbedConfig.backend``): export once, embed like PyTorch, cache apart, and
``auto`` falling back to PyTorch with a reason.

A backend's tests run only where it is installed (``pip install 'imgcluster[fast]'``); the cache key
and the fallback are checked everywhere. Exports go to a temporary cache folder (XDG_CACHE_HOME).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster.embed import backends, load_model, recorded_settings
from imgcluster.embed.onnx_export import ExportSpec, calibration_pixels, cosines
from imgcluster.errors import ConfigError, ModelUnavailable

from ..conftest import write_photos

INSTALLED = [name for name in backends.BACKENDS if importlib.util.find_spec(name) is not None]
needs_a_backend = pytest.mark.skipif(not INSTALLED, reason="no optimised backend installed ([fast] extra)")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """One temporary user cache for the module: each backend exports the tiny model once."""
    folder = tmp_path_factory.mktemp("user-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


def _pixels(embedder, n: int = 6) -> np.ndarray:
    return calibration_pixels(embedder, n, seed=5)


@pytest.mark.parametrize("backend", INSTALLED)
def test_an_installed_backend_exports_loads_and_embeds_like_pytorch(backend, tiny_models, cache_dir):
    folder = tiny_models["clip"]  # with a tokenizer: its text tower must keep working
    torch_model = load_model(str(folder), device="cpu")
    exact = load_model(str(folder), device="cpu", backend=backend, precision="float32")
    pixels = _pixels(torch_model)
    vectors = exact.embed(pixels)
    assert vectors.shape == (len(pixels), torch_model.dim) and vectors.dtype == np.float32
    assert cosines(vectors, torch_model.embed(pixels)).min() > 0.999  # float32: the same function
    assert exact.model_id == f"{torch_model.model_id}:{backend}-float32"
    assert exact.describe()["backend"] == backend and exact.check["median_cosine"] > 0.999
    # The text tower still runs (in PyTorch) in the space of the backend's image vectors.
    assert np.allclose(exact.embed_text(["a photo of a cat"]), torch_model.embed_text(["a photo of a cat"]),
                       atol=1e-5)
    # The exported file is in the user's cache, and a second load uses it instead of exporting again.
    assert Path(exact.describe()["check"]["file"]).is_relative_to(cache_dir)
    files = sorted(cache_dir.rglob("model.onnx"))
    again = load_model(str(folder), device="cpu", backend=backend, precision="float32")
    assert sorted(cache_dir.rglob("model.onnx")) == files
    assert np.allclose(again.embed(pixels), vectors, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_int8_vectors_are_cached_apart_and_the_run_says_which_backend_made_them(tiny_clip_dir, cache_dir, photos):
    ws = imgcluster.open_workspace(workspace=photos.parent / "ws")
    try:
        found = imgcluster.scan(photos, workspace=ws)
        fast = imgcluster.embed(found, workspace=ws, config=imgcluster.EmbedConfig(
            model=str(tiny_clip_dir), device="cpu", backend="onnxruntime"))
        plain = imgcluster.embed(found, workspace=ws, config=imgcluster.EmbedConfig(
            model=str(tiny_clip_dir), device="cpu"))
        assert fast.model["backend"] == "onnxruntime" and fast.model["precision"] == "int8"
        assert "backend" not in plain.model
        assert fast.model["model_id"] != plain.model["model_id"]
        assert plain.report.n_embedded == len(found.images)  # the int8 vectors were not reused for torch
        assert np.median(np.sum(fast.vectors * plain.vectors, axis=1)) > 0.95
        # A run's recorded model reloads with the same backend, so its model_id (and cache) match.
        reloaded = load_model(str(tiny_clip_dir), device="cpu", **recorded_settings(fast.model))
        assert reloaded.model_id == fast.model["model_id"]
    finally:
        ws.close()


def test_the_export_cache_key_separates_backends_versions_and_precisions():
    spec = ExportSpec(name="m", pooling=None, model_id="m:avgpool:1234", input_size=224, backend="onnxruntime",
                      backend_version="1.31.1", precision="int8", quantisation="static")
    others = [dataclasses.replace(spec, backend="openvino", backend_version="2026.4.1"),
              dataclasses.replace(spec, backend_version="1.32.0"),
              dataclasses.replace(spec, precision="float32", quantisation="none"),
              dataclasses.replace(spec, model_id="m:avgpool:5678"),  # other weights
              dataclasses.replace(spec, input_size=256)]
    folders = {spec.folder(), *(other.folder() for other in others)}
    assert len(folders) == 1 + len(others)
    assert spec.folder() == dataclasses.replace(spec).folder()  # stable: the same spec finds its file


def test_auto_falls_back_to_torch_with_a_log_line_when_no_backend_is_installed(tiny_clip_dir, monkeypatch, caplog):
    for backend in backends.BACKENDS.values():
        monkeypatch.setattr(backend, "available", lambda self: False)
    with caplog.at_level(logging.INFO, logger="imgcluster.embed.backends"):
        embedder = load_model(str(tiny_clip_dir), device="cpu", backend="auto")
    assert embedder.model_id == load_model(str(tiny_clip_dir), device="cpu").model_id
    assert any("backend: torch" in r.message and "not installed" in r.message for r in caplog.records)
    with pytest.raises(ModelUnavailable, match=r"imgcluster\[fast\]"):
        load_model(str(tiny_clip_dir), device="cpu", backend="onnxruntime")


@needs_a_backend
def test_auto_falls_back_to_torch_when_the_backend_is_outside_the_tolerance(tiny_clip_dir, cache_dir, monkeypatch,
                                                                           caplog):
    monkeypatch.setattr(backends, "TOLERANCE", {"median_cosine": 1.01})  # no backend can pass
    with caplog.at_level(logging.WARNING, logger="imgcluster.embed.backends"):
        embedder = load_model(str(tiny_clip_dir), device="cpu", backend="auto", precision="float32")
    assert not isinstance(embedder, backends.OptimisedEmbedder)
    assert any("outside the tolerance" in r.message for r in caplog.records)


@needs_a_backend
def test_auto_takes_an_installed_backend_within_the_tolerance(tiny_clip_dir, cache_dir):
    embedder = load_model(str(tiny_clip_dir), device="cpu", backend="auto", precision="float32")
    assert isinstance(embedder, backends.OptimisedEmbedder) and embedder.backend.name == INSTALLED[0]


@pytest.mark.parametrize("settings, message", [
    ({"backend": "tensorrt"}, "No backend called 'tensorrt'"),
    ({"precision": "int4"}, "No precision called 'int4'"),
    ({"backend": "torch", "precision": "int8"}, "torch backend runs float32"),
])
def test_bad_backend_settings_are_refused_with_the_choices(settings, message):
    with pytest.raises(ConfigError, match=message):
        imgcluster.EmbedConfig(**settings)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_a_run_made_by_a_backend_records_it_and_files_new_images_with_it(tiny_clip_dir, cache_dir, tmp_path):
    write_photos(tmp_path / "photos", 24)
    new = write_photos(tmp_path / "new", 2, start=100)
    run = imgcluster.cluster(tmp_path / "photos", model=str(tiny_clip_dir), workspace=tmp_path / "ws",
                             method="kmeans", k=3, namer="none",
                             overrides={"embed": {"backend": "onnxruntime", "device": "cpu"}})
    assert run.record.model["backend"] == "onnxruntime"
    assert run.record.config["embed"]["backend"] == "onnxruntime"  # auto choices resolved, as for the model
    # predict reloads the run's model with its backend: another backend's model_id would be refused.
    filed = imgcluster.predict(new, run=run.key, workspace=tmp_path / "ws", device="cpu")
    assert len(filed) == len(new)
