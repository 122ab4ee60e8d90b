"""Similar-image and text search over the workspace's vector index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imgcluster
from imgcluster.search import VectorIndex

from .conftest import jpeg_bytes, photo, write_photos
from .embed.conftest import _build

MODEL = "efficientnet-lite0"


@pytest.fixture
def embedded(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_photos(folder, 8)
    imgcluster.embed_folder(folder, config=imgcluster.EmbedConfig(model=MODEL))
    return folder


def test_similar_returns_the_query_image_itself_first(embedded: Path) -> None:
    query = embedded / "photo-0005.jpg"
    found = imgcluster.similar(query, k=3)  # the workspace is found above the image
    assert found.results[0].path == str(query)
    assert found.results[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert len(found.results) == 3 and found.results[0].similarity >= found.results[1].similarity >= \
        found.results[2].similarity
    assert found.index["kind"] == "exact" and found.index["rows"] == 8 and not found.query_embedded_now
    assert found.run is None and found.results[0].cluster is None


def test_the_index_is_updated_with_newly_embedded_images_not_rebuilt(embedded: Path) -> None:
    imgcluster.similar(embedded / "photo-0000.jpg")
    new = write_photos(embedded, 1, start=50)[0]
    imgcluster.embed_folder(embedded, config=imgcluster.EmbedConfig(model=MODEL))
    found = imgcluster.similar(new, k=2)
    assert found.results[0].path == str(new) and not found.query_embedded_now
    assert found.index["rows"] == 9 and found.index["built_rows"] == 8  # added to, not rebuilt
    saved = json.loads(next((embedded / ".imgcluster" / "index").glob("*/index.json")).read_text())
    assert saved["rows"] == 8 and saved["added"] == 1


def test_a_file_outside_the_catalogue_is_embedded_for_the_query(embedded: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "again.jpg"
    outside.parent.mkdir()
    outside.write_bytes(jpeg_bytes(photo(3).resize((90, 68))))
    found = imgcluster.similar(outside, k=1, path=embedded)
    assert found.query_embedded_now
    assert found.results[0].path == str(embedded / "photo-0003.jpg") and found.results[0].similarity > 0.9
    copy = tmp_path / "elsewhere" / "copy.jpg"
    shutil.copy(embedded / "photo-0002.jpg", copy)  # same bytes: the stored vector is used
    assert not imgcluster.similar(copy, k=1, path=embedded).query_embedded_now


def test_results_show_the_newest_runs_clusters(embedded: Path) -> None:
    run = imgcluster.cluster(embedded, model=MODEL, k=2, namer="none",
                             config=imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(method="pca", map_method="pca")))
    found = imgcluster.similar(embedded / "photo-0001.jpg", k=8)
    clusters = dict(zip([r.path for r in run.images], run.assignments.clusters.tolist()))
    assert found.run == run.key
    assert all(r.cluster == clusters[r.path] for r in found.results)


def test_text_search_with_a_tiny_clip(embedded: Path, tmp_path: Path) -> None:
    clip = tmp_path / "tiny-clip"
    _build("clip", clip)
    imgcluster.embed_folder(embedded, config=imgcluster.EmbedConfig(model=str(clip)))
    found = imgcluster.search_text("a photo of a cat", k=5, path=embedded)
    assert found.model == str(clip) and len(found.results) == 5
    scores = [r.similarity for r in found.results]
    assert scores == sorted(scores, reverse=True)
    model = imgcluster.load_model(str(clip))
    text = model.embed_text(["a photo of a cat"])[0]
    ws = imgcluster.open_workspace(embedded)
    try:
        best = ws.load_embeddings(model.model_id, [found.results[0].content_hash])[0]
    finally:
        ws.close()
    assert scores[0] == pytest.approx(float(text @ best), abs=1e-4)  # the text tower's own similarity


def test_text_search_without_a_text_tower_says_which_models_have_one(embedded: Path) -> None:
    with pytest.raises(imgcluster.ConfigError, match=r"efficientnet-lite0\) have none.*clip-vit-b32, clip-vit-l14, "
                                                     r"siglip-base"):
        imgcluster.search_text("a red car", path=embedded)


def test_approximate_index_finds_the_neighbours_and_survives_a_round_trip() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    vectors = centres[rng.integers(0, 20, 4000)] + 0.3 * rng.normal(size=(4000, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    keys = [f"{i:032x}" for i in range(4000)]
    index = VectorIndex(exact_up_to=1000).fit(vectors[:3000], keys[:3000])
    assert index.describe()["kind"] == "ivf-sq8" and index.describe()["nlist"] > 0
    index.add(vectors[3000:], keys[3000:])
    again = VectorIndex.from_state(*index.state())
    _, found = again.search(vectors[[5, 3500]], 10)
    truth = np.argsort(-(vectors[[5, 3500]] @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(f) & {keys[t] for t in row}) / 10 for f, row in zip(found, truth)])
    assert found[0][0] == keys[5] and found[1][0] == keys[3500] and recall >= 0.8
    assert not again.needs_rebuild() and again.add(vectors[:3000], keys[:3000]).needs_rebuild()
