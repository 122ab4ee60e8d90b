"""The report opens in a real browser and shows the map and the cluster grids."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import imgcluster

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI for the report test (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


def test_report_shows_map_and_grids_in_chromium(digits_run: imgcluster.Run, browser, tmp_path: Path) -> None:
    from PIL import Image

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(("file:", "data:"))
               else route.continue_())  # proves the report needs no network
    page.goto(digits_run.outputs["report"].as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    assert errors == []

    n_clusters = len(digits_run.clusters())
    assert page.locator(".cluster").count() == n_clusters
    assert page.locator("#legend .chip").count() == n_clusters
    loaded = page.eval_on_selector_all(".grid img", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")
    assert loaded >= min(16, digits_run.record.n_images)
    assert "efficientnet-lite0" in page.inner_text("#model")

    map_png = tmp_path / "map.png"
    page.locator("#map").screenshot(path=str(map_png))
    pixels = np.asarray(Image.open(map_png).convert("RGB")).reshape(-1, 3)
    coloured = pixels[(pixels.max(axis=1) - pixels.min(axis=1)) > 60]  # saturated: cluster dots
    assert len(coloured) > 2000
    assert len({tuple(p // 32) for p in coloured}) >= 4  # several cluster colours

    # Hovering over a dot shows its thumbnail and name.
    box = page.locator("#map").bounding_box()
    x, y = _a_dot(pixels.reshape(Image.open(map_png).height, -1, 3))
    page.mouse.move(box["x"] + x, box["y"] + y)
    tip = page.locator("#tip")
    assert tip.is_visible() and "digit-" in tip.inner_text()
    grid_png = tmp_path / "grid.png"
    page.locator(".cluster").first.screenshot(path=str(grid_png))
    grid = np.asarray(Image.open(grid_png).convert("L"))
    assert grid.std() > 40  # dark ink on white paper, not an empty box


def test_report_leads_each_cluster_with_its_representatives_and_names_it(digits_run: imgcluster.Run,
                                                                         browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(digits_run.outputs["report"].as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    representatives = digits_run.representatives()
    for summary in digits_run.clusters():
        grid = page.locator(f"#cluster-{summary.cluster}")
        kinds = grid.locator("figure .kind").all_inner_texts()
        first = grid.locator("figure").first
        assert "rep" in (first.get_attribute("class") or "") and kinds, summary.cluster
        if summary.cluster == -1:
            assert set(kinds) == {"diverse"}
            continue
        assert {"central", "probable", "diverse"} <= {k for text in kinds for k in text.split(" · ")}
        first_name = first.get_attribute("title").split(" · ")[0]
        central_path = next(r.path for r in digits_run.images if r.id == representatives[summary.cluster].central[0])
        assert central_path.endswith(first_name)  # the most central image leads
        name = digits_run.names[summary.cluster]
        heading = grid.locator("h3").inner_text()
        assert heading.startswith(name.name) and f"cluster {summary.cluster}" in heading
        # the confidence in words beside the number: a person reads "unsure", not "4%"
        assert (f"named by imagenet · {name.level} {round(name.confidence * 100)}%"
                in grid.locator(".naming").inner_text())
    legend = page.locator("#legend").inner_text()
    assert all(f"{c} · {n.name}" in legend for c, n in digits_run.names.items())
    for c, n in digits_run.names.items():  # the legend says how far to trust each name, too
        assert page.locator(f"#legend .chip[data-cluster='{c}'] .level").inner_text() == n.level


def _a_dot(image: np.ndarray) -> tuple[int, int]:
    saturated = (image.max(axis=2).astype(int) - image.min(axis=2)) > 60
    ys, xs = np.nonzero(saturated)
    middle = len(xs) // 2
    return int(xs[middle]), int(ys[middle])


def test_every_point_of_a_few_thousand_images_has_a_hover_picture(digits_run: imgcluster.Run) -> None:
    from imgcluster.report import HOVER_SAMPLE, thumbnail_ids
    from imgcluster.store import Assignments

    # A run of 4,000 images (the 3,925 photos showed a picture for only 41% of their points).
    n = 4000
    assert n <= HOVER_SAMPLE
    ids = np.arange(1, n + 1)
    many = Assignments(ids, np.zeros(n, dtype=np.int64), np.ones(n), np.zeros(n), np.zeros(n),
                       np.asarray(["fit"] * n, dtype=object))
    assert set(thumbnail_ids(digits_run.record, many)) >= set(ids.tolist())
    # Above the bound a spread sample keeps a million-image report a file a browser opens.
    n = HOVER_SAMPLE * 3
    ids = np.arange(1, n + 1)
    huge = Assignments(ids, np.zeros(n, dtype=np.int64), np.ones(n), np.zeros(n), np.zeros(n),
                       np.asarray(["fit"] * n, dtype=object))
    assert HOVER_SAMPLE <= len(thumbnail_ids(digits_run.record, huge)) < 2 * HOVER_SAMPLE


def test_hover_pictures_are_small_jpegs(digits_run: imgcluster.Run) -> None:
    import io

    from PIL import Image

    from imgcluster.report import HOVER_SIDE, hover_thumbnail

    photo = Image.new("RGB", (128, 96), (200, 30, 30))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=95)
    small = hover_thumbnail(buffer.getvalue())
    with Image.open(io.BytesIO(small)) as image:
        assert image.format == "JPEG" and max(image.size) <= HOVER_SIDE
        assert image.getpixel((image.width // 2, image.height // 2))[0] > 150  # still the red picture
    assert hover_thumbnail(b"not a jpeg") == b"not a jpeg"  # a damaged thumbnail stays as it was


@pytest.mark.parametrize("stored", [(128, 128), (128, 96), (85, 128)])
def test_hover_pictures_decode_straight_to_half_size(monkeypatch, stored: tuple[int, int]) -> None:
    # Decoding the stored 128-px thumbnail at half scale (no full decode, no resize) is what keeps a
    # 4,000-photo report's hover pictures at 0.6 s instead of 1.5 s; a square request would decode
    # a 128 x 96 picture whole.
    import io

    from PIL import Image, JpegImagePlugin

    from imgcluster.report import hover_thumbnail

    decoded = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spied(self, mode, size):  # type: ignore[no-untyped-def]
        answer = draft(self, mode, size)
        decoded.append(self.size)
        return answer

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spied)
    buffer = io.BytesIO()
    Image.new("RGB", stored, (30, 120, 200)).save(buffer, "JPEG", quality=90)
    small = hover_thumbnail(buffer.getvalue())
    half = ((stored[0] + 1) // 2, (stored[1] + 1) // 2)
    assert decoded == [half]
    with Image.open(io.BytesIO(small)) as image:
        assert image.size == half


def test_the_report_map_zooms_and_moves_and_double_click_shows_it_whole(digits_run: imgcluster.Run,
                                                                       browser, tmp_path: Path) -> None:
    from PIL import Image

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(digits_run.outputs["report"].as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    canvas = page.locator("#map")
    box = canvas.bounding_box()

    def coloured_share() -> float:
        path = tmp_path / "map.png"
        canvas.screenshot(path=str(path))
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return float(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).mean())

    whole = coloured_share()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*middle)
    for _ in range(6):
        page.mouse.wheel(0, -300)
    page.wait_for_function("Number(document.getElementById('map').dataset.zoom) > 2", timeout=10_000)
    zoomed = coloured_share()
    assert zoomed != whole  # the map was drawn again at another scale
    zoomed_pixels = np.asarray(Image.open(tmp_path / "map.png").convert("RGB")).astype(int)
    before = float(canvas.get_attribute("data-zoom"))
    page.mouse.move(*middle)
    page.mouse.down()
    page.mouse.move(middle[0] + 120, middle[1] + 60, steps=5)
    page.mouse.up()
    page.wait_for_timeout(300)
    assert float(canvas.get_attribute("data-zoom")) == before  # dragging moves, it does not zoom
    coloured_share()
    moved = np.asarray(Image.open(tmp_path / "map.png").convert("RGB")).astype(int)
    assert not np.array_equal(moved, zoomed_pixels)  # the map moved under the pointer
    page.mouse.dblclick(*middle)
    page.wait_for_function("Number(document.getElementById('map').dataset.zoom) === 1", timeout=10_000)
    assert abs(coloured_share() - whole) < 0.002  # the whole map again
    assert errors == []
