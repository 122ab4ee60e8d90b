"""Every family loads offline from a saved folder, pools as asked, and never mixes poolings in the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster.config import POOLINGS
from imgcluster.embed import MODELS, load_model, normalise

from ..conftest import photo
from .conftest import DIMS, N_PATCHES

# Each transformers registry entry and the tiny family that stands in for it.
TWINS = {"clip-vit-b32": "clip", "clip-vit-l14": "clip", "siglip-base": "siglip", "dinov2-small": "dinov2",
         "dinov2-base": "dinov2", "vit-mae-base": "vit-mae"}


@pytest.fixture(autouse=True)
def offline_on_one_thread(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Tiny models' ops take microseconds: a second thread only adds waiting on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def embed(model, seeds=(0, 1)) -> np.ndarray:  # type: ignore[no-untyped-def]
    return model.embed(np.stack([model.preprocess(photo(seed, size=(48, 40))) for seed in seeds]))


def test_every_registry_entry_declares_a_default_its_poolings_and_a_size() -> None:
    for spec in MODELS.values():
        assert spec.pooling in spec.poolings and set(spec.poolings) <= set(POOLINGS), spec.name
        assert spec.size_mb > 0 and spec.dim > 0 and spec.description
    assert set(TWINS) == {name for name, spec in MODELS.items() if spec.family == "transformers"}


@pytest.mark.parametrize("family", sorted(DIMS))
def test_every_pooling_gives_finite_unit_vectors_under_its_own_model_id(family: str,
                                                                     tiny_models: dict[str, Path]) -> None:
    default = load_model(str(tiny_models[family]))
    assert default.input_size == 32 and default.dim == DIMS[family]
    for spec in (MODELS[name] for name, twin in TWINS.items() if twin == family):
        assert (default.pooling, default.poolings) == (spec.pooling, spec.poolings), spec.name
    vectors, ids = {}, set()
    for pooling in default.poolings:
        model = load_model(str(tiny_models[family]), pooling=pooling)
        raw = embed(model)
        assert raw.shape == (2, model.dim) and np.isfinite(raw).all()
        vectors[pooling] = normalise(raw)
        assert np.allclose(np.linalg.norm(vectors[pooling], axis=1), 1.0, atol=1e-5)
        assert pooling in model.model_id and model.describe()["pooling"] == pooling
        ids.add(model.model_id)
    assert len(ids) == len(default.poolings)  # vectors from different poolings never share a cache key
    for other in ("cls", "image-features"):
        if other in vectors and vectors[other].shape == vectors["mean"].shape:
            assert not np.allclose(vectors[other], vectors["mean"], atol=1e-3), other


def test_dinov2_pools_its_layer_normed_class_token_by_default(tiny_models: dict[str, Path]) -> None:
    cls = embed(load_model(str(tiny_models["dinov2"])))
    assert np.allclose(cls, embed(load_model(str(tiny_models["dinov2"]), pooling="pooler")), atol=1e-6)


def test_vit_mae_sees_every_patch_and_sums_all_tokens(tiny_models: dict[str, Path]) -> None:
    """Saved with mask ratio 0.75, ViT-MAE is loaded with 0: sum = class token + 16 patches, every call."""
    folder = str(tiny_models["vit-mae"])
    summed = load_model(folder)
    assert summed.pooling == "sum" and summed.model.config.mask_ratio == 0.0
    cls, mean = embed(load_model(folder, pooling="cls")), embed(load_model(folder, pooling="mean"))
    assert np.allclose(embed(summed), cls + N_PATCHES * mean, rtol=1e-4, atol=1e-4)
    alone = embed(summed, seeds=(1,))[0]
    assert np.allclose(embed(summed)[1], alone, atol=1e-5)  # no random mask: the same image, the same vector


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_clip_like_models_embed_text_in_their_image_space(family: str, tiny_models: dict[str, Path]) -> None:
    model = load_model(str(tiny_models[family]))
    texts = model.embed_text(["a photo of a cat", "a sunset", "receipt"])
    assert texts.shape == (3, model.dim) and np.isfinite(texts).all()
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1], atol=1e-3)
    assert model.describe()["text_tower"] is True


def test_text_needs_a_text_tower_and_the_image_features_space(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(imgcluster.ConfigError, match="has no text tower"):
        load_model(str(tiny_models["dinov2"])).embed_text(["a cat"])
    cls = load_model(str(tiny_models["clip"]), pooling="cls")
    assert cls.describe()["text_tower"] is False
    with pytest.raises(imgcluster.ConfigError, match="pooling='image-features'"):
        cls.embed_text(["a cat"])


def test_a_pooling_the_model_lacks_or_no_one_knows_fails_before_any_work(tiny_models: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    with pytest.raises(imgcluster.ConfigError, match="Choose one of: image-features, pooler, cls, mean, sum"):
        load_model(str(tmp_path / "not-even-a-folder"), pooling="max")
    with pytest.raises(imgcluster.ConfigError, match="No pooling called 'max'"):
        imgcluster.EmbedConfig(pooling="max")
    with pytest.raises(imgcluster.ConfigError, match="vit-mae-base cannot pool with 'pooler'.*cls, mean, sum"):
        load_model("vit-mae-base", pooling="pooler")  # refused from the registry: nothing downloaded
    with pytest.raises(imgcluster.ConfigError, match="efficientnet-lite0 cannot pool with 'cls'"):
        load_model("efficientnet-lite0", pooling="cls")
    with pytest.raises(imgcluster.ConfigError, match="cannot pool with 'cls'.*image-features, pooler, mean, sum"):
        load_model(str(tiny_models["siglip"]), pooling="cls")  # SigLIP has no class token


def test_embedding_caches_each_pooling_apart(tiny_models: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    ws = imgcluster.open_workspace(tmp_path / "ws")
    found = imgcluster.scan(photos, workspace=ws)
    config = imgcluster.EmbedConfig(model=str(tiny_models["dinov2"]), pooling="mean")
    mean = imgcluster.embed(found, workspace=ws, config=config)
    cls = imgcluster.embed(found, workspace=ws, config=imgcluster.EmbedConfig(model=config.model))
    assert mean.model["pooling"] == "mean" and cls.model["pooling"] == "cls"
    assert mean.report.n_embedded == cls.report.n_embedded == 24  # the cls pass reused nothing
    assert not np.allclose(mean.vectors, cls.vectors, atol=1e-3)
    again = imgcluster.embed(found, workspace=ws, config=config)
    assert again.report.n_cached == 24 and np.allclose(again.vectors, mean.vectors)


def test_a_run_files_new_images_with_the_pooling_it_was_made_with(tiny_models: dict[str, Path], photos: Path,
                                                                  tmp_path: Path) -> None:
    config = imgcluster.RunConfig(embed=imgcluster.EmbedConfig(model=str(tiny_models["dinov2"]), pooling="mean"),
                                  cluster=imgcluster.ClusterConfig(method="kmeans", k=3))
    run = imgcluster.cluster(photos, workspace=tmp_path / "ws", config=config)
    assert run.record.model_id.endswith(":mean")
    filed = imgcluster.load_predictor(workspace=tmp_path / "ws")
    assert filed.embedder.pooling == "mean"  # not the model's default (cls), whose vectors live elsewhere
    [again] = filed.predict_files([sorted(photos.iterdir())[0]])
    assert again.status != "skipped" and again.nearest_similarity > 0.99  # itself, in the same space
