"""The whole job on real images: the digits demo, clustered with the bundled model."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from sklearn.metrics import normalized_mutual_info_score

import imgcluster

from .conftest import DIGITS_FOR_TESTS, digit_labels

# Measured on the first 500 digits with efficientnet-lite0 + the default UMAP and auto mode: NMI
# 0.68-0.71 over seeds 0-3 (k-means with the true k=10 on the same UMAP space: 0.66-0.70). The bar
# leaves room for platform noise but fails if the clusters stop following the digits.
MIN_NMI = 0.65


def test_clusters_follow_the_digit_labels(digits_dir: Path, digits_run: imgcluster.Run) -> None:
    labels = digit_labels(digits_dir)
    truth = [labels[r.path] for r in digits_run.images]
    nmi = normalized_mutual_info_score(truth, digits_run.assignments.clusters)
    print(f"NMI on {len(truth)} digits: {nmi:.3f}")
    assert len(truth) == DIGITS_FOR_TESTS
    assert nmi >= MIN_NMI
    assert 5 <= digits_run.record.n_clusters <= 40


def test_run_records_the_model_that_produced_it(digits_run: imgcluster.Run) -> None:
    record = digits_run.record
    assert record.model_name == "efficientnet-lite0"
    assert record.as_info()["model"]["dim"] == 1280
    assert record.config["embed"]["model"] == "efficientnet-lite0"
    chosen = record.config["cluster"]  # the automatic choice is stored: k-means' k or HDBSCAN's size
    assert chosen["method"] == "auto" and ((chosen.get("k") or 0) >= 2 or (chosen.get("min_cluster_size") or 0) >= 2)
    assert record.as_info()["clustering"]["auto"]["reason"].startswith(record.as_info()["clustering"]["auto"]["choice"])
    assert set(record.as_info()["timings"]) >= {"scan", "embed", "reduce", "cluster", "report"}


def test_outputs_hold_every_image_with_cluster_probability_and_map(digits_run: imgcluster.Run) -> None:
    with open(digits_run.outputs["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [r.path for r in digits_run.images]
    assert set(rows[0]) == {"path", "cluster", "name", "membership_probability", "x", "y", "how"}
    assert {r["how"] for r in rows} == {"fit"}  # 500 images: fitted whole, nothing filed or attached
    table = pq.read_table(digits_run.outputs["parquet"]).to_pydict()
    assert table["cluster"] == [int(r["cluster"]) for r in rows]
    probabilities = np.asarray(table["membership_probability"])
    assert ((0 <= probabilities) & (probabilities <= 1)).all()
    assert np.ptp(table["x"]) > 0 and np.ptp(table["y"]) > 0
    html = digits_run.outputs["report"].read_text()
    assert "efficientnet-lite0" in html and "data:image/jpeg;base64," in html


def test_stored_run_reads_back_identically(digits_dir: Path, digits_run: imgcluster.Run) -> None:
    again = imgcluster.load_run(digits_run.key, path=digits_dir / "images")
    assert [r.path for r in again.images] == [r.path for r in digits_run.images]
    assert np.array_equal(again.assignments.clusters, digits_run.assignments.clusters)


def test_rerun_embeds_nothing_and_new_images_only_once(digits_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((digits_dir / "images").rglob("digit-00[0-5]?.png")):  # 60 images
        shutil.copy(path, folder / path.name)
    workspace = tmp_path / "ws"
    first = imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", k=5)
    assert first.record.as_info()["embedding"] == {"new": 60, "cached": 0}
    again = imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", k=5)
    assert again.record.as_info()["embedding"] == {"new": 0, "cached": 60}
    extra = imgcluster.write_digits(tmp_path / "more", limit=DIGITS_FOR_TESTS + 10)
    for index in range(DIGITS_FOR_TESTS, DIGITS_FOR_TESTS + 10):  # new contents, not copies
        (path,) = extra.rglob(f"digit-{index:04d}.png")
        shutil.copy(path, folder / f"new-{path.name}")
    grown = imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", k=5)
    assert grown.record.as_info()["embedding"] == {"new": 10, "cached": 60}
    assert grown.record.n_images == 70
    assert len({r.key for r in (first, again, grown)}) == 3
    changed = folder / "digit-0000.png"
    with Image.open(changed) as image:
        turned = image.rotate(90)
    turned.save(changed)  # same path, new content: embedded again, the other 69 are not
    edited = imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", k=5)
    assert edited.record.as_info()["embedding"] == {"new": 1, "cached": 69}


def test_evaluate_counts_label_rows_that_name_no_image(digits_dir: Path, digits_run: imgcluster.Run,
                                                       tmp_path: Path) -> None:
    """A labels file with typos scores what it can and says how many rows it left out; one of bare
    file names is refused with the path it should have written."""
    import pytest

    with open(digits_dir / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:100]
    mixed = tmp_path / "mixed.csv"
    with open(mixed, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows((r["path"] if n < 60 else Path(r["path"]).name, r["label"]) for n, r in enumerate(rows))
    metrics = imgcluster.evaluate(mixed, digits_run.key, path=digits_dir / "images")
    assert metrics["all"]["n"] == 60 and metrics["unmatched_label_rows"] == 40
    assert metrics["unmatched_label_example"] == Path(rows[60]["path"]).name
    from typer.testing import CliRunner

    from imgcluster.cli import app

    said = CliRunner().invoke(app, ["evaluate", "--labels", str(mixed), "--run", digits_run.key,
                                    "--folder", str(digits_dir / "images")], env={"COLUMNS": "250"})
    assert said.exit_code == 0, said.output
    assert f"40 row(s) of {mixed} name no image of the run" in " ".join(said.output.split())
    whole = imgcluster.evaluate(digits_dir / "labels.csv", digits_run.key, path=digits_dir / "images")
    assert whole["unmatched_label_rows"] == 0 and whole["unmatched_label_example"] is None

    bare = tmp_path / "bare.csv"
    bare.write_text("path,label\n" + "".join(f"{Path(r['path']).name},{r['label']}\n" for r in rows[:5]))
    with pytest.raises(imgcluster.ImgclusterError, match=rf"is the file name of '{rows[0]['path']}'"):
        imgcluster.evaluate(bare, digits_run.key, path=digits_dir / "images")
