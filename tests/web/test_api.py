"""The HTTP API over a real run: runs, clusters, images, neighbours, predict, edits as derived runs,
and no way to read a file that is not a catalogued image."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

import imgcluster


@pytest.fixture(scope="module")
def client(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def labels(digits_dir: Path) -> dict[str, int]:
    with open(digits_dir / "labels.csv") as handle:
        return {Path(row["path"]).name: int(row["label"]) for row in csv.DictReader(handle)}


def test_runs_clusters_and_map_describe_the_run(client: httpx.Client, digits_run: imgcluster.Run) -> None:
    runs = client.get("/api/runs").json()
    assert [r["key"] for r in runs] == [digits_run.key] and runs[0]["parent"] is None
    clusters = client.get("/api/clusters").json()
    assert clusters["run"] == digits_run.key
    assert sum(c["size"] for c in clusters["clusters"]) == digits_run.record.n_images
    named = {c["cluster"]: c["name"] for c in clusters["clusters"]}
    assert all(named[c] == n.name for c, n in digits_run.names.items())
    levels = {c["cluster"]: c["name_level"] for c in clusters["clusters"]}
    assert all(levels[c] == n.level in ("sure", "likely", "unsure") for c, n in digits_run.names.items())

    body = client.get(f"/api/runs/{digits_run.key}/map")
    n = int(body.headers["x-points"])
    assert n == digits_run.record.n_images and len(body.content) == 16 * n
    x = np.frombuffer(body.content, np.float32, n, 0)
    clusters_map = np.frombuffer(body.content, np.int32, n, 8 * n)
    ids = np.frombuffer(body.content, np.int32, n, 12 * n)
    row = {image_id: i for i, image_id in enumerate(digits_run.assignments.image_ids.tolist())}
    rows = np.asarray([row[i] for i in ids.tolist()])  # every image once, in the map's own order
    assert sorted(rows.tolist()) == list(range(n))
    assert (clusters_map == digits_run.assignments.clusters[rows]).all()
    assert np.allclose(x, digits_run.assignments.x[rows], atol=1e-4)
    info = client.get(f"/api/runs/{digits_run.key}").json()
    assert info["model_name"] == "efficientnet-lite0" and info["parent"] is None
    assert "/api/clusters/{cluster}/images" in client.get("/api/openapi.json").json()["paths"]


def test_cluster_images_come_in_pages_most_probable_first(client: httpx.Client, digits_run: imgcluster.Run) -> None:
    biggest = max((c for c in digits_run.clusters() if c.cluster != -1), key=lambda c: c.size)
    seen, probabilities, offset = [], [], 0
    while True:
        page = client.get(f"/api/clusters/{biggest.cluster}/images", params={"offset": offset, "limit": 25}).json()
        assert page["total"] == biggest.size
        if not page["images"]:
            break
        seen += [i["id"] for i in page["images"]]
        probabilities += [i["membership_probability"] for i in page["images"]]
        offset += len(page["images"])
    members = set(digits_run.assignments.image_ids[digits_run.assignments.clusters == biggest.cluster].tolist())
    assert len(seen) == len(set(seen)) == biggest.size and set(seen) == members
    assert probabilities == sorted(probabilities, reverse=True)


def test_thumbnails_are_cached_by_content_and_only_for_catalogued_ids(client: httpx.Client,
                                                                      digits_run: imgcluster.Run) -> None:
    image_id = int(digits_run.assignments.image_ids[0])
    first = client.get(f"/api/images/{image_id}/thumbnail")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.content[:2] == b"\xff\xd8" and "max-age" in first.headers["cache-control"]
    again = client.get(f"/api/images/{image_id}/thumbnail", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content
    original = client.get(f"/api/images/{image_id}/file")
    assert original.status_code == 200 and original.content == Path(digits_run.images[0].path).read_bytes()

    assert client.get("/api/images/999999/thumbnail").status_code == 404
    assert client.get("/api/images/999999/file").status_code == 404
    for attempt in ("/api/images/..%2F..%2F..%2Fetc%2Fpasswd/file", "/api/images/%2Fetc%2Fpasswd/thumbnail",
                    "/api/images/1%2F..%2F..%2Fcatalogue.db/file", "/api/images/-1/file",
                    "/api/runs/..%2F..%2Fcatalogue.db/map", "/api/runs/..%2Fruns/map",
                    "/api/clusters?run=../../etc", "/static/../catalogue.db", "/static/..%2F..%2Fstore%2Fworkspace.py",
                    "/api/images/1/file?path=/etc/passwd"):
        response = client.get(attempt)
        assert response.status_code in (404, 422) or (attempt.endswith("?path=/etc/passwd")
                                                       and response.content == original.content), attempt
        assert b"root:" not in response.content and b"SQLite format" not in response.content


def test_an_image_page_shows_its_membership_and_neighbours(client: httpx.Client, digits_run: imgcluster.Run,
                                                           labels: dict[str, int]) -> None:
    agree = []
    for record in digits_run.images[::50]:
        image = client.get(f"/api/images/{record.id}").json()
        row = list(digits_run.assignments.image_ids).index(record.id)
        assert image["cluster"] == digits_run.assignments.clusters[row]
        assert image["membership_probability"] == pytest.approx(digits_run.assignments.membership_probability[row],
                                                                abs=1e-3)
        near = client.get(f"/api/images/{record.id}/neighbours", params={"k": 10}).json()["neighbours"]
        assert len(near) == 10 and record.id not in [n["id"] for n in near]
        assert [n["similarity"] for n in near] == sorted((n["similarity"] for n in near), reverse=True)
        names = {r.id: Path(r.path).name for r in digits_run.images}
        agree.append(np.mean([labels[names[n["id"]]] == labels[Path(record.path).name] for n in near]))
    assert np.mean(agree) > 0.6  # nearest images are mostly the same digit
    assert client.get("/api/images/999999/neighbours").status_code == 404


def test_an_uploaded_image_is_filed_with_its_digit(client: httpx.Client, digits_run: imgcluster.Run,
                                                   labels: dict[str, int], unseen_digits: dict[int, Path],
                                                   web_workspace: Path) -> None:
    names = {r.id: Path(r.path).name for r in digits_run.images}
    digits_in: dict[int, Counter] = {}
    for image_id, cluster in zip(digits_run.assignments.image_ids.tolist(), digits_run.assignments.clusters.tolist()):
        digits_in.setdefault(cluster, Counter())[labels[names[image_id]]] += 1
    paths = [path for _, path in sorted(unseen_digits.items())]
    from_cli = imgcluster.predict(paths, run=digits_run.key, workspace=web_workspace)
    hits, assigned = 0, 0
    for (label, path), expected in zip(sorted(unseen_digits.items()), from_cli):
        result = client.post("/api/predict", files={"file": (path.name, path.read_bytes(), "image/png")}).json()
        assert result["status"] in ("assigned", "unassigned") and len(result["neighbours"]) == 12
        assert (result["cluster"], result["membership_probability"]) == pytest.approx(
            (expected.cluster, expected.membership_probability), abs=1e-4)  # the same as `imgcluster predict`
        assigned += result["status"] == "assigned"
        hits += result["cluster"] != -1 and digits_in[result["cluster"]].most_common(1)[0][0] == label
    # 500 digits make a rough model: some uploads stay unassigned, and chance would be 1 in 10.
    assert assigned >= 5 and hits > assigned / 2  # filed mostly into a cluster of their own digit

    damaged = paths[0].read_bytes()[:60]  # a PNG cut short: an image, but one that cannot be decoded
    broken = client.post("/api/predict", files={"file": ("broken.png", damaged, "image/png")}).json()
    assert broken["status"] == "skipped" and broken["reason"] and broken["neighbours"] == []
    not_png = client.post("/api/predict", files={"file": ("broken.png", b"\x89PNG not really", "image/png")})
    assert not_png.status_code == 415 and "not an image" in not_png.json()["detail"]


def test_text_search_says_when_the_model_has_no_text_tower(client: httpx.Client) -> None:
    response = client.get("/api/search", params={"q": "a handwritten seven"})
    assert response.status_code == 409 and "text tower" in response.json()["detail"]


def test_a_manual_name_persists(client: httpx.Client, digits_run: imgcluster.Run, web_workspace: Path) -> None:
    cluster = digits_run.clusters()[0].cluster
    renamed = client.put(f"/api/clusters/{cluster}/name", json={"name": "  loops   and lines "}).json()
    assert renamed["name"] == "loops and lines" and renamed["named_by"] == "manual"
    shown = {c["cluster"]: c for c in client.get("/api/clusters").json()["clusters"]}
    assert shown[cluster]["name"] == "loops and lines"
    assert imgcluster.load_run(workspace=web_workspace).names[cluster].name == "loops and lines"
    assert client.put("/api/clusters/999/name", json={"name": "x"}).status_code == 400


def test_merge_and_move_save_derived_runs_and_keep_the_original(client: httpx.Client, digits_run: imgcluster.Run,
                                                                web_workspace: Path) -> None:
    a, b = [c.cluster for c in digits_run.clusters() if c.cluster != -1][:2]
    merged = client.post("/api/clusters/merge", json={"run": digits_run.key, "clusters": [a, b]}).json()
    assert merged["parent"] == digits_run.key and merged["run"] != digits_run.key
    assert merged["n_clusters"] == digits_run.record.n_clusters - 1
    derived = imgcluster.load_run(merged["run"], workspace=web_workspace)
    before = digits_run.assignments.clusters
    assert (derived.assignments.clusters[np.isin(before, [a, b])] == a).all()
    assert (derived.assignments.clusters[~np.isin(before, [a, b])] == before[~np.isin(before, [a, b])]).all()
    original = imgcluster.load_run(digits_run.key, workspace=web_workspace)
    assert (original.assignments.clusters == before).all()  # the original stays comparable
    runs = {r["key"]: r for r in client.get("/api/runs").json()}
    assert runs[merged["run"]]["parent"] == digits_run.key and runs[merged["run"]]["edit"]["action"] == "merge"
    comparison = client.get(f"/api/runs/{digits_run.key}/compare/{merged['run']}").json()
    assert comparison["n_common"] == digits_run.record.n_images and comparison["merges"]

    ids = digits_run.assignments.image_ids[before == a][:3].tolist()
    target = next(c.cluster for c in digits_run.clusters() if c.cluster not in (-1, a, b))
    moved = client.post(f"/api/clusters/{target}/images", json={"run": merged["run"], "image_ids": ids}).json()
    assert moved["parent"] == merged["run"]
    for image_id in ids:
        image = client.get(f"/api/images/{image_id}", params={"run": moved["run"]}).json()
        assert (image["cluster"], image["how"], image["membership_probability"]) == (target, "moved", 1.0)
    page = client.get(f"/api/clusters/{target}/images", params={"run": moved["run"], "limit": 500}).json()
    assert set(ids) <= {i["id"] for i in page["images"]}
    assert client.post("/api/clusters/merge", json={"clusters": [a, 999]}).status_code == 400
    assert client.post(f"/api/clusters/{target}/images", json={"image_ids": [999999]}).status_code == 400


def test_the_atlas_serves_sprite_sheets_of_the_maps_points(client: httpx.Client, digits_run: imgcluster.Run) -> None:
    from PIL import Image

    from imgcluster.web.atlas import PER_SHEET, TILE

    n = digits_run.record.n_images
    sheets = -(-n // PER_SHEET)
    first = client.get(f"/api/runs/{digits_run.key}/atlas/0")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    sheet = np.asarray(Image.open(io.BytesIO(first.content)).convert("L"))
    assert sheet.shape == (16 * TILE, 16 * TILE) and sheet.std() > 40  # digits drawn, not empty tiles
    assert client.get(f"/api/runs/{digits_run.key}/atlas/0", headers={"If-None-Match": first.headers["etag"]}
                      ).status_code == 304
    last = Image.open(io.BytesIO(client.get(f"/api/runs/{digits_run.key}/atlas/{sheets - 1}").content))
    assert last.height == -(-(n - (sheets - 1) * PER_SHEET) // 16) * TILE
    assert client.get(f"/api/runs/{digits_run.key}/atlas/{sheets}").status_code == 404


def test_the_cluster_list_shows_measured_stability(client: httpx.Client, digits_run: imgcluster.Run,
                                                   web_workspace: Path) -> None:
    cluster = digits_run.clusters()[0].cluster
    with imgcluster.open_workspace(workspace=web_workspace) as ws:
        ws.save_stability(digits_run.key, {"clusters": [{"cluster": cluster, "stability": 0.42, "unstable": True}]})
    shown = {c["cluster"]: c for c in client.get("/api/clusters", params={"run": digits_run.key}).json()["clusters"]}
    assert (shown[cluster]["stability"], shown[cluster]["unstable"]) == (0.42, True)
    assert all(c["stability"] is None for k, c in shown.items() if k != cluster)


def test_serve_refuses_a_folder_without_a_workspace(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imgcluster.cli import app

    result = CliRunner().invoke(app, ["serve", "--workspace", str(tmp_path / "none")])
    assert isinstance(result.exception, imgcluster.ConfigError)
    assert "No imgcluster workspace" in str(result.exception) and "http://" not in result.output


def test_an_uploaded_picture_unlike_the_run_is_held_and_says_why(client: httpx.Client, unseen_digits: dict[int, Path],
                                                                  tmp_path: Path) -> None:
    from ..conftest import jpeg_bytes, photo

    held = client.post("/api/predict", files={"file": ("stripes.jpg", jpeg_bytes(photo(0, size=(128, 128))),
                                                       "image/jpeg")}).json()
    assert held["status"] == "unassigned" and held["cluster"] == -1 and held["membership_probability"] == 0
    assert held["held_by"] in ("far", "density", "typicality", "agreement")
    assert held["reason"].startswith(("held:", "unassigned"))
    uploads = [client.post("/api/predict", files={"file": (d.name, d.read_bytes(), "image/png")}).json()
               for d in unseen_digits.values()]
    filed = [u for u in uploads if u["status"] == "assigned"]
    assert len(filed) >= 0.6 * len(uploads)  # scans by other writers than the run's: most are filed
    assert all(u["held_by"] == "" and "own members" in u["reason"] for u in filed)
