"""Models: the bundled CNN sees what ImageNet taught it; CLIP and any HF model load offline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcluster
from imgcluster.embed import load_model, normalise, resolve_name, weights_available

# ImageNet classes 281-285 are the domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian).
CAT_CLASSES = set(range(281, 286))


def test_bundled_efficientnet_recognises_a_cat() -> None:
    """Weights and preprocessing are right: scikit-image's cat photo lands in ImageNet's cat classes."""
    import skimage.data
    import torch

    model = load_model("efficientnet-lite0")
    pixels = model.preprocess(Image.fromarray(skimage.data.chelsea()))[None]
    with torch.inference_mode():
        logits = model.model(torch.from_numpy(pixels))
    assert set(logits.topk(3).indices[0].tolist()) & CAT_CLASSES
    features = model.embed(pixels)
    assert features.shape == (1, 1280) and np.isfinite(features).all()


def test_similar_photos_are_closer_than_different_ones() -> None:
    import skimage.data

    model = load_model("efficientnet-lite0")
    cat = Image.fromarray(skimage.data.chelsea())
    images = [cat, cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.fromarray(skimage.data.coffee())]
    v = normalise(model.embed(np.stack([model.preprocess(i) for i in images])))
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_tiny_clip_from_a_local_folder_embeds_a_folder(tiny_clip_dir: Path, photos: Path) -> None:
    run = imgcluster.cluster(photos, model=str(tiny_clip_dir), k=3)
    assert run.record.as_info()["model"]["dim"] == 24  # the projection, not the hidden size
    assert run.record.as_info()["model"]["model_type"] == "clip"
    assert run.record.as_info()["model"]["text_tower"] is True
    assert run.record.model_id.startswith("hf-dir:")
    assert run.record.n_images == 24


def test_auto_prefers_clip_when_its_weights_are_in_the_hf_cache(tiny_clip_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_name("auto") == "efficientnet-lite0"  # nothing cached on a clean machine
    cache = tmp_path / "hub"
    snapshot = cache / "models--openai--clip-vit-base-patch32" / "snapshots" / "0123456789abcdef"
    shutil.copytree(tiny_clip_dir, snapshot)
    (cache / "models--openai--clip-vit-base-patch32" / "refs").mkdir()
    (cache / "models--openai--clip-vit-base-patch32" / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert weights_available("clip-vit-b32")
    assert resolve_name("auto") == "clip-vit-b32"
    model = load_model("auto")
    assert model.name == "clip-vit-b32"
    assert model.model_id.startswith("hf:openai/clip-vit-base-patch32@0123456789ab")


def test_a_local_folder_under_a_snapshots_folder_is_named_by_its_content(tiny_clip_dir: Path,
                                                                         tmp_path: Path) -> None:
    # Only the HF cache's models--ORG--NAME/snapshots/COMMIT layout is named by its commit; a user's
    # own folder that happens to sit under "snapshots" must change its id when its weights change
    # (else embeddings cached for the old weights would be served for the new ones).
    folder = tmp_path / "snapshots" / "my-clip"
    shutil.copytree(tiny_clip_dir, folder)
    first = load_model(str(folder)).model_id
    assert first.startswith("hf-dir:")
    weights = next(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin"})
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # weights written again
    assert load_model(str(folder)).model_id != first


def test_missing_weights_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(imgcluster.ModelUnavailable, match="huggingface-cli download openai/clip-vit-base-patch32"):
        load_model("clip-vit-b32")
    with pytest.raises(imgcluster.ModelUnavailable, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(imgcluster.UnknownName, match="Choose one of: auto, clip-vit-b32"):
        load_model("resnet-9000")


@pytest.mark.parametrize("repo_files, fetched", [
    ({"config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"}, {"config.json", "model.safetensors"}),
    ({"config.json", "pytorch_model.bin", "vocab.txt"}, {"config.json", "pytorch_model.bin", "vocab.txt"}),
])
def test_a_download_fetches_one_copy_of_the_weights(repo_files: set[str], fetched: set[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What `imgcluster models` says a model's download weighs is what it fetches: not .bin beside .safetensors."""
    import fnmatch

    import huggingface_hub

    from imgcluster.embed import hf

    def fake_snapshot_download(repo_id: str, local_files_only: bool = False,
                               allow_patterns: list[str] | None = None) -> str:
        if local_files_only:
            raise FileNotFoundError(repo_id)  # not in the cache
        for name in repo_files:
            if any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns or ["*"]):
                (tmp_path / name).write_text("x")
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hf.locate("owner/model", allow_download=True) == tmp_path
    assert {p.name for p in tmp_path.iterdir()} == fetched
