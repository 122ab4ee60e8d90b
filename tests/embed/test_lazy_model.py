"""A Hugging Face model seen before is built from what its first load measured, and loads torch,
transformers and its weights only when it has to embed: a process whose images are all cached, or
that embeds through an optimised backend, never pays for them (issue 29: CLIP's optimised path had
peaked above PyTorch's with both loaded)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgcluster.embed import load_model
from imgcluster.embed.onnx_export import calibration_pixels


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_a_model_seen_before_embeds_the_same_vectors_and_loads_only_when_it_embeds(tiny_models, user_cache):
    folder = str(tiny_models["clip"])
    first = load_model(folder, device="cpu")
    assert list((user_cache / "imgcluster" / "model_facts").glob("*.json")), "the first load keeps what it measured"
    again = load_model(folder, device="cpu")
    assert again.describe()["device"] == "not loaded"
    assert (again.model_id, again.dim, again.poolings, again.has_text_tower, again.input_size) == \
        (first.model_id, first.dim, first.poolings, first.has_text_tower, first.input_size)
    pixels = calibration_pixels(first, 3, seed=2)
    assert np.allclose(again.embed(pixels), first.embed(pixels), atol=1e-6)
    assert again.describe()["device"] == "cpu"
    assert np.allclose(again.embed_text(["a red square"]), first.embed_text(["a red square"]), atol=1e-6)


def test_another_pooling_and_a_damaged_record_are_measured_again(tiny_models, user_cache):
    folder = str(tiny_models["clip"])
    default = load_model(folder, device="cpu")
    mean = load_model(folder, device="cpu", pooling="mean")
    assert mean.pooling == "mean" and not mean.has_text_tower and mean.model_id != default.model_id
    for record in (user_cache / "imgcluster" / "model_facts").glob("*.json"):
        record.write_text('{"model_type": "clip", "dim": ')  # cut off mid-write
    again, mean_again = load_model(folder, device="cpu"), load_model(folder, device="cpu", pooling="mean")
    assert (again.model_id, again.dim) == (default.model_id, default.dim)
    assert (mean_again.model_id, mean_again.dim) == (mean.model_id, mean.dim)
    assert all(json.loads(record.read_text()) for record in (user_cache / "imgcluster" / "model_facts").glob("*.json"))


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed ([fast] extra)")
def test_a_fresh_process_embedding_through_onnxruntime_never_imports_torch(tiny_models, user_cache):
    folder = str(tiny_models["clip"])
    exact = load_model(folder, device="cpu", backend="onnxruntime", precision="float32")  # exports, keeps facts
    pixels = calibration_pixels(exact, 2, seed=4)
    np.save(user_cache / "pixels.npy", pixels)
    code = (f"import sys, numpy as np; from imgcluster.embed import load_model; "
            f"m = load_model({folder!r}, device='cpu', backend='onnxruntime', precision='float32'); "
            f"np.save({str(user_cache / 'out.npy')!r}, m.embed(np.load({str(user_cache / 'pixels.npy')!r}))); "
            f"print('torch' in sys.modules, 'transformers' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["False", "False"]
    assert np.allclose(np.load(user_cache / "out.npy"), exact.embed(pixels), atol=1e-5)


def test_changed_preprocessing_settings_are_read_again(tiny_models, user_cache, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_models["clip"], folder)
    first = load_model(str(folder), device="cpu")
    settings_file = folder / "preprocessor_config.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    settings["image_mean"] = [0.25, 0.25, 0.25]
    settings_file.write_text(json.dumps(settings))
    assert first.preprocess_spec.mean != (0.25, 0.25, 0.25)
    assert load_model(str(folder), device="cpu").preprocess_spec.mean == (0.25, 0.25, 0.25)
