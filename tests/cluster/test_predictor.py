"""The persisted predictor files new images into a run's clusters without refitting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

import imgcluster
from imgcluster.cluster.predictor import Predictor


def test_predictor_round_trip_in_a_new_process(digits_dir: Path, digits_run: imgcluster.Run) -> None:
    sample = digits_run.images[::10]
    result = subprocess.run(
        [sys.executable, "-m", "imgcluster.cli", "predict", *[r.path for r in sample], "--run", digits_run.key,
         "--folder", str(digits_dir / "images"), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    filed = json.loads(result.stdout)
    fitted = dict(zip([r.path for r in digits_run.images], digits_run.assignments.clusters.tolist()))
    agreement = np.mean([f["cluster"] == fitted[f["path"]] for f in filed])
    assert len(filed) == len(sample) and agreement >= 0.95


def test_held_out_images_land_in_the_cluster_the_fit_gave_them(digits_dir: Path, digits_run: imgcluster.Run) -> None:
    """Honest check: fit the predictor without 20% of the images, then file those."""
    ws = imgcluster.open_workspace(digits_dir / "images")
    vectors = ws.load_embeddings(digits_run.record.model_id, [r.content_hash for r in digits_run.images])
    ws.close()
    a = digits_run.assignments
    held = np.zeros(len(vectors), dtype=bool)
    held[::5] = True
    clustered = a.clusters != -1
    predictor = Predictor().fit(vectors[~held], a.clusters[~held], a.membership_probability[~held],
                                np.c_[a.x, a.y][~held], a.image_ids[~held])
    prediction = predictor.predict(vectors[held])
    both = clustered[held]
    agreement = np.mean(prediction.clusters[both] == a.clusters[held][both])
    print(f"held-out agreement with the fit: {agreement:.3f}")
    assert agreement >= 0.85
    distance = np.hypot(prediction.x - a.x[held], prediction.y - a.y[held])
    assert np.median(distance) < 0.1 * np.ptp(a.x)  # placed near where the fit put them


def test_far_away_and_broken_images_are_not_forced_into_a_cluster(digits_dir: Path, digits_run: imgcluster.Run,
                                                                  tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "sunset.jpg"
    gradient = np.linspace(0, 255, 200 * 200 * 3).reshape(200, 200, 3).astype(np.uint8)
    Image.fromarray(gradient[..., ::-1]).save(photo)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:300])
    predictor = imgcluster.load_predictor(digits_run.key, path=digits_dir / "images")
    far, damaged, known = predictor.predict_files([photo, broken, digits_run.images[0].path])
    assert far.status == "unassigned" and far.held_by in ("far", "density", "typicality") and far.reason.startswith(
        ("unassigned: far from every image", "held: "))
    assert damaged.status == "skipped" and damaged.reason
    assert known.cluster == digits_run.assignments.clusters[0]
    assert known.nearest_path == digits_run.images[0].path and known.nearest_similarity > 0.999


def test_predictor_state_round_trips_without_pickle() -> None:
    vectors = np.eye(3, 1280, dtype=np.float32)
    predictor = Predictor().fit(vectors, np.array([0, 0, 1]), np.ones(3), np.zeros((3, 2)), np.arange(3))
    arrays, index, params = predictor.state()
    again = Predictor.from_state(arrays, index, params)
    assert np.array_equal(again.predict(vectors).clusters, [0, 0, 1])


def test_a_mapped_predictor_files_rows_added_since_its_index_was_written(tmp_path: Path) -> None:
    """A loaded index file is memory-mapped (read-only); rows filed later are searched beside it,
    persist as a delta, and fold into the index when the whole state is written again."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 512)).astype(np.float32)
    vectors = np.repeat(centres, 2_500, axis=0) + 0.3 * rng.standard_normal((7_500, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.repeat([0, 1, 2], 2_500)
    fitted = Predictor().fit(vectors, labels, np.ones(len(labels)), np.zeros((len(labels), 2)), np.arange(len(labels)))
    arrays, index, params = fitted.state()
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    mapped = Predictor.from_state(arrays, tmp_path / "index.faiss", params)

    new_centre = rng.standard_normal(512).astype(np.float32)
    joined = new_centre + 0.3 * rng.standard_normal((40, 512)).astype(np.float32)
    joined /= np.linalg.norm(joined, axis=1, keepdims=True)
    mapped.extend(joined[:30], np.full(30, 7), np.ones(30), np.zeros((30, 2)), np.arange(30) + 10_000)
    assert np.array_equal(mapped.predict(joined[30:]).clusters, np.full(10, 7))
    assert np.array_equal(mapped.predict(vectors[::500]).clusters, labels[::500])

    delta_arrays, delta_params = mapped.delta_state()
    reloaded = Predictor.from_state(delta_arrays, tmp_path / "index.faiss", delta_params)
    assert np.array_equal(reloaded.predict(joined[30:]).clusters, np.full(10, 7))
    whole = Predictor.from_state(*mapped.state())
    assert whole.index_.ntotal == 7_530 and not len(whole.added_)
    assert np.array_equal(whole.predict(joined[30:]).clusters, np.full(10, 7))


def test_predict_holds_an_image_unlike_the_run_and_files_one_like_it(digits_dir: Path, digits_run: imgcluster.Run,
                                                                     tmp_path: Path) -> None:
    """The public API and the command: a picture of stripes is held with the test it failed, an
    unseen scan of a digit is filed, and the run's held quantile can be overridden."""
    from ..conftest import digit_labels, photo

    stripes = tmp_path / "stripes.jpg"
    photo(0, size=(128, 128)).save(stripes)
    unseen_root = imgcluster.write_digits(tmp_path / "more", limit=620).parent
    unseen = [p for p, label in digit_labels(unseen_root).items() if p.endswith("digit-0610.png")][0]
    held, filed = imgcluster.predict([stripes, unseen], run=digits_run.key, path=digits_dir / "images")
    assert held.status == "unassigned" and held.held_by in ("far", "density", "typicality", "agreement")
    assert held.reason.startswith(("held:", "unassigned: far")) and held.membership_probability == 0
    assert filed.status == "assigned" and filed.held_by == "" and 0 < filed.membership_probability <= 1
    assert "own members" in filed.reason

    result = subprocess.run(
        [sys.executable, "-m", "imgcluster.cli", "predict", str(stripes), unseen, "--run", digits_run.key,
         "--folder", str(digits_dir / "images"), "--held-quantile", "0", "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    by_vote = json.loads(result.stdout)
    assert by_vote[1]["status"] == "assigned" and "own members" not in by_vote[1]["reason"]
    with pytest.raises(imgcluster.ConfigError, match="held_quantile must be between 0 and 0.5"):
        imgcluster.predict([unseen], run=digits_run.key, path=digits_dir / "images", held_quantile=0.7)
