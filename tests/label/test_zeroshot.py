"""Zero-shot names end to end on a tiny random CLIP: the mechanics, not the quality of random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster.label import ClusterView, ZeroShotNamer
from imgcluster.label.hierarchy import name_cluster, vocabulary_hierarchy
from imgcluster.label.vocabulary import (
    TEMPLATES,
    builtin_vocabulary,
    imagenet_class_names,
    load_sections,
    read_sections,
    read_vocabulary,
)


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
    tree = vocabulary_hierarchy(builtin_vocabulary(), load_sections(None))
    assert sorted(run.names) == [0, 1, 2, 3]
    for name in run.names.values():  # random weights: any node of the tree, hedged, or mixed or unrecognised
        base = name.name.split(" · ")[0].rstrip("?")
        assert name.source == "zero-shot" and 0 <= name.confidence <= 1 and name.candidates[0][0] == name.name
        assert base in tree.names or base.startswith(("mixed: ", "unrecognised (")), name.name
    assert len({n.name for n in run.names.values()}) == 4  # never two alike
    assert len(list((workspace / "cache" / "text-embeddings").glob("*.npy"))) == 1  # cached for the next run

    words = tmp_path / "words.txt"
    words.write_text("cats\ndogs  # pets\nreceipts\n\nsunsets\n")
    names = imgcluster.name_clusters(config=imgcluster.NameConfig(namer="zero-shot", vocabulary=str(words)),
                                     workspace=workspace)
    words = {"cats", "dogs", "receipts", "sunsets"}
    assert all(n.error is None and (n.name.split(" · ")[0].rstrip("?") in words or n.name.startswith(("mixed: ",
               "unrecognised ("))) for n in names)
    shown = imgcluster.load_run(workspace=workspace).names
    assert {c: n.name for c, n in shown.items()} == {n.cluster: n.name for n in names}


def test_zero_shot_needs_a_text_tower(digits_run: imgcluster.Run, tmp_path: Path) -> None:
    import shutil

    workspace = shutil.copytree(digits_run.workspace, tmp_path / "ws")
    with pytest.raises(imgcluster.ConfigError, match="no text tower"):
        imgcluster.name_clusters(namer="zero-shot", workspace=workspace)
    with pytest.raises(imgcluster.UnknownName, match="Choose one of: auto, imagenet"):
        imgcluster.name_clusters(namer="gpt", workspace=workspace)


def test_the_vocabulary_hierarchy_puts_imagenet_words_in_wordnet_and_broad_words_under_their_section() -> None:
    vocabulary = builtin_vocabulary()
    tree = vocabulary_hierarchy(vocabulary, load_sections(None))
    path = {term: [tree.names[a] for a in tree.ancestors(vocabulary.index(term))] for term in
            ("espresso", "meme", "food", "selfie")}
    assert path["espresso"][:3] == ["espresso", "beverage", "food"]
    assert path["meme"][1] == path["selfie"][1] == "screens, documents and art"
    assert path["food"][1] == "food" and "matter" in path["food"]  # a broad word WordNet has: in WordNet
    assert read_sections("a\n# -- pets\ncats # x\n# -- places\nroads\n") == {"cats": "pets", "roads": "places"}


def probabilities(vocabulary: list[str], rows: list[dict[str, float]]) -> np.ndarray:
    out = np.zeros((len(rows), len(vocabulary)))
    for i, row in enumerate(rows):
        out[i] = (1 - sum(row.values())) / len(vocabulary)
        for term, p in row.items():
            out[i, vocabulary.index(term)] += p
    return out


def spread(terms: list[str]) -> list[dict[str, float]]:
    """Members each surest of another of ``terms`` (0.5), the rest of their mass on the others."""
    return [{t: 0.5 if t == first else 0.4 / (len(terms) - 1) for t in terms} for first in terms * 2]


def test_zero_shot_probabilities_are_hedged_up_to_a_section_or_a_wordnet_node() -> None:
    vocabulary = builtin_vocabulary()
    tree = vocabulary_hierarchy(vocabulary, load_sections(None))
    # sure of one word: the word; spread over words of one section: the section; over food words
    # of ImageNet and the broad list alike: WordNet's food
    assert name_cluster(probabilities(vocabulary, [{"meme": 0.95}] * 4), tree).text == "meme"
    screens = name_cluster(probabilities(vocabulary, spread(["meme", "screenshot", "tweet"])), tree)
    assert screens.text == "screens, documents and art" and screens.confidence >= 0.65
    food = name_cluster(probabilities(vocabulary, spread(["pizza", "espresso", "food"])), tree)
    assert food.text == "food"
    # a section too wide to say anything ("places and things": cities, cars, weapons) names nothing
    wide = name_cluster(probabilities(vocabulary, spread(["city", "flag", "weapon"])), tree)
    assert wide.text != "places and things"


class OneHotText:
    """A text tower giving each vocabulary word its own axis: a member's embedding says which words it is."""

    model_id = "one-hot"

    def __init__(self, vocabulary: list[str]):
        self.axis = {template.format(term): i for i, term in enumerate(vocabulary) for template in TEMPLATES}
        self.size = len(vocabulary)

    def embed_text(self, sentences: list[str]) -> np.ndarray:
        return np.eye(self.size, dtype=np.float32)[[self.axis[s] for s in sentences]]


def test_the_zero_shot_namer_reads_each_member_and_names_clusters_apart() -> None:
    vocabulary = ["cats", "dogs", "receipts", "invoices", "tabby cat"]
    sections = {"cats": "pets", "dogs": "pets", "receipts": "paperwork", "invoices": "paperwork"}
    namer = ZeroShotNamer(OneHotText(vocabulary), vocabulary, sections=sections)
    axis = np.eye(len(vocabulary), dtype=np.float32)

    def view(cluster: int, members: list[int]) -> ClusterView:
        embeddings = axis[members]
        sample = ClusterView(cluster, len(members), [""] * len(members), [""] * len(members), embeddings=embeddings)
        return ClusterView(cluster, len(members), [], [], mean_embedding=embeddings.mean(axis=0), sample=sample)

    names = namer.name([view(0, [0] * 6), view(1, [0, 1] * 3), view(2, [2, 3] * 3), view(3, [2] * 5)])
    assert [n.name for n in names] == ["cats", "pets", "paperwork", "receipts"]
    # the mean of a cat and a dog is no animal; its members, each sure, make the cluster "pets"
    kept = namer.name([view(0, [0] * 6), view(3, [2] * 5)], keep={0: "felines"})
    assert [n.name for n in kept] == ["receipts"]
