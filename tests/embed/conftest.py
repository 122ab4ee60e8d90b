"""Tiny random models of each registered family, saved like the hub's: weights, preprocessor, tokenizer.

Each loads offline in a fraction of a second; the numbers they produce mean nothing, the shapes
and the plumbing (pooling, preprocessing, text tower) are what the tests check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# 2 layers, 2 heads, 32-px images in 8-px patches: 16 patch tokens (+ a class token where the family has one).
IMAGE, PATCH = 32, 8
N_PATCHES = (IMAGE // PATCH) ** 2
WORDS = ["<pad>", "<unk>", "</s>", "a", "photo", "of", "cat", "dog", "receipt", "sunset"]
PAD, EOS = 0, 2

# family -> the dimension its default pooling gives (each differs, so a mix-up shows)
DIMS = {"clip": 24, "siglip": 48, "dinov2": 40, "vit-mae": 56, "vit": 64}


def _layers(hidden: int, **extra: Any) -> dict[str, Any]:
    return {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
            "num_attention_heads": 2, **extra}


def _vision(hidden: int, **extra: Any) -> dict[str, Any]:
    return _layers(hidden, **{"image_size": IMAGE, "patch_size": PATCH, **extra})


def _text(hidden: int, **extra: Any) -> dict[str, Any]:
    return _layers(hidden, vocab_size=len(WORDS), max_position_embeddings=12, pad_token_id=PAD,
                   eos_token_id=EOS, bos_token_id=EOS, **extra)


def _save_tokenizer(folder: Path) -> None:
    """A whitespace word-level tokenizer ending every text with </s>, as tokenizer.json: no download,
    no sentencepiece (the real SigLIP's tokenizer needs it)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>",
                            eos_token="</s>").save_pretrained(folder)


def _save_processor(folder: Path, **settings: Any) -> None:
    (folder / "preprocessor_config.json").write_text(json.dumps({"resample": 3, **settings}))


def _build(family: str, folder: Path) -> None:
    import torch
    from transformers import (CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model, SiglipConfig, SiglipModel,
                              ViTConfig, ViTMAEConfig, ViTMAEModel, ViTModel)

    torch.manual_seed(0)
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    if family == "clip":
        CLIPModel(CLIPConfig(text_config=_text(32), vision_config=_vision(32), projection_dim=DIMS["clip"]))\
            .save_pretrained(folder)
        _save_tokenizer(folder)
        _save_processor(folder, size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE},
                        do_center_crop=True, image_mean=[0.481, 0.458, 0.408], image_std=[0.269, 0.261, 0.276])
    elif family == "siglip":
        SiglipModel(SiglipConfig(text_config=_text(DIMS["siglip"]), vision_config=_vision(DIMS["siglip"])))\
            .save_pretrained(folder)
        _save_tokenizer(folder)
        _save_processor(folder, size={"height": IMAGE, "width": IMAGE}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    elif family == "dinov2":
        # Like the real one: position embeddings for a larger image, interpolated to the 32-px crop.
        Dinov2Model(Dinov2Config(**_vision(DIMS["dinov2"], image_size=2 * IMAGE))).save_pretrained(folder)
        _save_processor(folder, size={"shortest_edge": IMAGE + 4}, crop_size={"height": IMAGE, "width": IMAGE},
                        do_center_crop=True, **imagenet)
    elif family == "vit-mae":
        # Saved with the training mask ratio, as facebook/vit-mae-base is: loading must turn it off.
        ViTMAEModel(ViTMAEConfig(**_vision(DIMS["vit-mae"], mask_ratio=0.75))).save_pretrained(folder)
        _save_processor(folder, size={"height": IMAGE, "width": IMAGE}, **imagenet)
    elif family == "vit":
        ViTModel(ViTConfig(**_vision(DIMS["vit"]))).save_pretrained(folder)
        _save_processor(folder, size={"height": IMAGE, "width": IMAGE}, **imagenet)
    else:
        raise ValueError(family)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family → folder of a tiny random model saved with save_pretrained, for every family in DIMS."""
    folders = {}
    for family in DIMS:
        folders[family] = tmp_path_factory.mktemp(f"tiny-{family}")
        _build(family, folders[family])
    return folders
