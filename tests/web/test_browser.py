"""The web app in Debian's Chromium: the map draws its points, a cluster opens its grid, a rename
survives a reload, and an uploaded image is filed into a cluster. Screenshots are kept as artefacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcluster

from .conftest import select_box


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web-screenshots")


def coloured_pixels(png: Path) -> np.ndarray:
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
    return pixels[(pixels.max(axis=1) - pixels.min(axis=1)) > 50]  # saturated: cluster colours, not paper


def test_the_map_draws_every_cluster_and_a_cluster_opens_its_grid(page, digits_run: imgcluster.Run,
                                                                  artefacts: Path) -> None:
    assert int(page.get_attribute("body", "data-points")) == digits_run.record.n_images
    map_png = artefacts / "map.png"
    page.locator("#map").screenshot(path=str(map_png))
    coloured = coloured_pixels(map_png)
    assert len(coloured) > 1500
    assert len({tuple(p // 48) for p in coloured}) >= 5  # several cluster colours

    biggest = max((c for c in digits_run.clusters() if c.cluster != -1), key=lambda c: c.size)
    page.click(f"#clusters li[data-cluster='{biggest.cluster}'] .name")
    page.wait_for_selector(f"#cluster-grid[data-cluster='{biggest.cluster}'] figure img")
    page.wait_for_function("document.querySelectorAll('#cluster-grid img').length >= 20 && "
                           "[...document.querySelectorAll('#cluster-grid img')].slice(0, 20)"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#cluster-grid figure").count() == min(biggest.size, 60)
    assert page.inner_text("#panel-title") == digits_run.names[biggest.cluster].name
    page.screenshot(path=str(artefacts / "app.png"))
    grid_png = artefacts / "grid.png"
    page.locator("#panel").screenshot(path=str(grid_png))
    assert np.asarray(Image.open(grid_png).convert("L")).std() > 40  # dark ink on white paper

    page.click("#cluster-grid figure")  # the image page: probability and neighbours
    page.wait_for_selector("#neighbours figure")
    assert page.locator("#neighbours figure").count() == 12
    assert 0.0 <= float(page.inner_text("#membership")) <= 1.0
    page.screenshot(path=str(artefacts / "image.png"))


def test_zoomed_in_points_become_their_images(page, artefacts: Path) -> None:
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(40):
        page.mouse.wheel(0, -240)
        if page.get_attribute("body", "data-atlas"):
            break
    page.wait_for_function("Number(document.body.dataset.atlas) > 0")
    page.wait_for_timeout(800)  # thumbnails arrive
    page.locator("#mapwrap").screenshot(path=str(artefacts / "atlas.png"))


def test_a_rename_survives_a_reload(page, digits_run: imgcluster.Run) -> None:
    cluster = digits_run.clusters()[1].cluster
    page.click(f"#clusters li[data-cluster='{cluster}'] .ren")
    page.fill(f"#clusters li[data-cluster='{cluster}'] .name input", "curly ones")
    page.press(f"#clusters li[data-cluster='{cluster}'] .name input", "Enter")
    page.wait_for_function(f"document.querySelector(\"#clusters li[data-cluster='{cluster}'] .name\")"
                           ".textContent === 'curly ones'")
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text(f"#clusters li[data-cluster='{cluster}'] .name") == "curly ones"


def test_an_uploaded_image_is_filed_into_a_cluster(page, unseen_digits: dict[int, Path], artefacts: Path) -> None:
    """Unseen scans of the run's digits are filed (most of them: the open-set filing may hold one that
    sits at the edge of its cluster, and the page must then say it is held, with the reason)."""
    statuses = {}
    for label, path in sorted(unseen_digits.items()):
        page.set_input_files("#upload", str(path))
        result = page.wait_for_selector(f'#predict-result:has(img[alt="{path.name}"])')
        statuses[label] = result.get_attribute("data-status")
        verdict = page.inner_text("#predict-result .verdict")
        if statuses[label] == "assigned":
            assert int(result.get_attribute("data-cluster")) >= 0 and "Filed into" in verdict
            page.wait_for_selector("#predict-result .grid figure")
            page.screenshot(path=str(artefacts / "predict.png"))
        else:
            assert statuses[label] == "unassigned" and "Held, not filed" in verdict, (label, verdict)
            assert page.inner_text("#predict-result .reason").strip()  # which test it failed
    filed = sum(status == "assigned" for status in statuses.values())
    assert filed >= 0.6 * len(statuses), statuses


def test_a_box_selection_opens_a_grid_and_moves_images_into_a_derived_run(page, digits_run: imgcluster.Run,
                                                                          web_workspace: Path) -> None:
    select_box(page, 0.2, 0.8)
    selected = int(page.inner_text("#panel-title").split()[0])
    assert 0 < selected < digits_run.record.n_images

    page.click("#panel-actions button:has-text('Pick images')")
    figures = page.locator("#selection-grid figure")
    picked = [int(figures.nth(i).get_attribute("data-id")) for i in (0, 1)]
    figures.nth(0).click()
    figures.nth(1).click()
    assert page.inner_text("#panel-actions").count("2 picked") == 1
    target = next(c.cluster for c in digits_run.clusters() if c.cluster != -1)
    page.select_option("#panel-actions select", str(target))
    page.click("#panel-actions button:has-text('Move picked to')")
    page.wait_for_function(f"document.querySelector('#run').value !== {digits_run.key!r}")
    page.wait_for_selector(f"#cluster-grid[data-cluster='{target}']")
    derived = imgcluster.load_run(page.input_value("#run"), workspace=web_workspace)
    assert derived.record.as_info()["edit"] == {"parent": digits_run.key, "action": "move", "cluster": target,
                                           "image_ids": sorted(picked)}
    rows = np.isin(derived.assignments.image_ids, picked)
    assert (derived.assignments.clusters[rows] == target).all()
