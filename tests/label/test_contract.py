"""Every registered namer keeps the contract: one name per cluster, with its source and candidates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcluster import NameConfig
from imgcluster.label import NAMERS, ClusterView, NamingContext, make_namer
from imgcluster.label import vlm as vlm_module


class FakeClassifier:
    """An ImageNet head that prefers a different class for each image colour."""

    name, input_size = "fake-cnn", 8

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return np.asarray(image.resize((8, 8)), dtype=np.float32).transpose(2, 0, 1) / 255

    def classify(self, batch: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(batch), 1000))
        logits[np.arange(len(batch)), (batch.mean(axis=(2, 3)) @ [300, 30, 3]).astype(int) % 1000] = 5
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


class FakeTextTower:
    """Puts each of four words on its own axis, whatever prompt carries it."""

    name, model_id = "fake-clip", "fake-clip:1"
    words = ("apples", "leaves", "sky", "stones")

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return np.array([np.eye(4)[[w in text for w in self.words].index(True)] for text in texts], dtype=np.float32)


@pytest.mark.parametrize("name", sorted(NAMERS))
def test_every_namer_keeps_the_contract(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    views = []
    for cluster, colour in enumerate(("red", "green", "blue")):
        paths = []
        for i in range(3):
            path = tmp_path / f"{colour}-{i}.png"
            Image.new("RGB", (16, 16), colour).save(path)
            paths.append(str(path))
        mean = np.eye(4, dtype=np.float32)[cluster]
        views.append(ClusterView(cluster, 3, paths, [f"{colour}{i}" for i in range(3)], [None] * 3, mean))
    words = tmp_path / "words.txt"
    words.write_text("apples\nleaves\nsky\nstones\n")
    monkeypatch.setenv("IMGCLUSTER_VLM_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("IMGCLUSTER_VLM_MODEL", "fake-vl")
    answers = iter(["red things", "green things", "blue things"])
    monkeypatch.setattr(vlm_module, "post_json", lambda url, body, headers, timeout: {
        "choices": [{"message": {"content": next(answers)}}]})
    context = NamingContext({"name": "fake"}, FakeTextTower, FakeClassifier)
    namer = make_namer(name, NameConfig(vocabulary=str(words), vlm_min_interval=0), context)

    ticks: list[tuple[int, int]] = []
    names = namer.name(views, progress=lambda done, total: ticks.append((done, total)))
    if ticks:  # clusters named (or the namer's own steps) n/N: from 0, never backwards, ending at N
        assert ticks[0][0] == 0 and ticks[-1][0] == ticks[-1][1] > 0
        assert all(a[0] <= b[0] for a, b in zip(ticks, ticks[1:]))
    if name == "none":
        assert names == []
        return
    if name in ("imagenet", "vlm"):  # one cluster at a time
        assert ticks == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [n.cluster for n in names] == [0, 1, 2]
    for named in names:
        assert named.source == namer.source and named.name and named.error is None
        assert 1 <= len(named.candidates) <= 3 and named.candidates[0][0] == named.name
        assert named.confidence is None or 0 < named.confidence <= 1
    assert len({n.name for n in names}) == 3  # distinct clusters, distinct names
