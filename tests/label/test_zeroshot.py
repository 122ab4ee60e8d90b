"""Zero-shot names end to end on a tiny random CLIP: the mechanics, not the quality of random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster.label.vocabulary import builtin_vocabulary, imagenet_class_names, read_vocabulary


@pytest.fixture(scope="module")
def tiny_clip_with_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer CLIP with a byte-level tokenizer saved beside it (every text encodes offline)."""
    import json

    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip-text")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab[char + suffix] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "vocab_size": len(vocab), "max_position_embeddings": 48, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24)
    CLIPModel(config).eval().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "image_mean": [0.48, 0.46, 0.41],
        "image_std": [0.27, 0.26, 0.28], "resample": 3, "size": {"shortest_edge": 32}}))
    return folder


def test_the_builtin_vocabulary_holds_imagenet_and_broad_words() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and "espresso" in names
    vocabulary = builtin_vocabulary()
    assert {"meme", "screenshot", "selfie", "food", "text document", "landscape", "diagram"} <= set(vocabulary)
    assert len(vocabulary) >= 1300 and len({v.casefold() for v in vocabulary}) == len(vocabulary)
    assert read_vocabulary("cats\n\n# pets\nDogs  # loyal\ncats\n") == ["cats", "Dogs"]


def test_zero_shot_names_every_cluster_through_the_text_tower(tiny_clip_with_text: Path, photos: Path,
                                                               tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    run = imgcluster.cluster(photos, model=str(tiny_clip_with_text), k=4, workspace=workspace)
    assert run.record.as_info()["naming"] == {"namer": "zero-shot"}  # auto: the model has a text tower
    vocabulary = set(builtin_vocabulary())
    assert sorted(run.names) == [0, 1, 2, 3]
    for name in run.names.values():
        assert name.source == "zero-shot" and name.name in vocabulary and 0 < name.confidence <= 1
        assert len(name.candidates) == 3 and sum(score for _, score in name.candidates) <= 1.0001
    assert len(list((workspace / "cache" / "text-embeddings").glob("*.npy"))) == 1  # cached for the next run

    words = tmp_path / "words.txt"
    words.write_text("cats\ndogs  # pets\nreceipts\n\nsunsets\n")
    names = imgcluster.name_clusters(config=imgcluster.NameConfig(namer="zero-shot", vocabulary=str(words)),
                                     workspace=workspace)
    assert all(n.name in {"cats", "dogs", "receipts", "sunsets"} and n.error is None for n in names)
    shown = imgcluster.load_run(workspace=workspace).names
    assert {c: n.name for c, n in shown.items()} == {n.cluster: n.name for n in names}
    probabilities = np.array([[s for _, s in n.candidates] for n in names])
    assert probabilities.shape == (4, 3) and (probabilities >= 0).all() and (probabilities.sum(axis=1) <= 1.0001).all()


def test_zero_shot_needs_a_text_tower(digits_run: imgcluster.Run, tmp_path: Path) -> None:
    import shutil

    workspace = shutil.copytree(digits_run.workspace, tmp_path / "ws")
    with pytest.raises(imgcluster.ConfigError, match="no text tower"):
        imgcluster.name_clusters(namer="zero-shot", workspace=workspace)
    with pytest.raises(imgcluster.UnknownName, match="Choose one of: auto, imagenet"):
        imgcluster.name_clusters(namer="gpt", workspace=workspace)
