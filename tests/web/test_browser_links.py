"""The web app in Debian's Chromium, as a user shares a view by its link: the link holds the run, the
cluster or the selection, the zoom and the filters, and opening it shows that view again; Back goes to
the view before with its own zoom. Every page the app has opens without a console error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import imgcluster

from .conftest import open_app, select_box

CAMERA_SAVED = ("new URLSearchParams(location.hash.slice(1)).get('camera') === "
                "[imgclusterMap.camera()].map((c) => [c.cx.toFixed(5), c.cy.toFixed(5), c.k.toPrecision(5)].join())[0]")


def zoom_in(page, steps: int = 2) -> dict:
    """Zoom with the wheel at the map's centre; the camera once the link holds it."""
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.55)
    for _ in range(steps):
        page.mouse.wheel(0, -200)
    page.wait_for_function(CAMERA_SAVED)
    return page.evaluate("imgclusterMap.camera()")


def same_camera(page, camera: dict) -> None:
    now = page.evaluate("imgclusterMap.camera()")
    assert abs(now["k"] / camera["k"] - 1) < 1e-4 and abs(now["cx"] - camera["cx"]) < 1e-5 \
        and abs(now["cy"] - camera["cy"]) < 1e-5, (now, camera)


def test_a_link_reproduces_a_cluster_and_the_zoom(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    clusters = np.asarray(digits_run.assignments.clusters)
    top = int(np.bincount(clusters[clusters >= 0]).argmax())
    open_app(page, server, digits_run.key)
    page.click(f"#clusters li[data-cluster='{top}']")
    page.wait_for_selector(f"#cluster-grid[data-cluster='{top}'] figure")
    fitted = page.evaluate("imgclusterMap.camera()")
    camera = zoom_in(page)
    assert camera["k"] > fitted["k"]
    link = page.url
    assert f"run={digits_run.key}" in link and f"cluster={top}" in link

    page.goto("about:blank")
    page.goto(link)  # a fresh page from the link alone
    page.wait_for_selector(f"#cluster-grid[data-cluster='{top}'] figure", timeout=30_000)
    page.wait_for_function(f"document.body.dataset.opened === {digits_run.key!r}")
    same_camera(page, camera)  # the link's zoom, not the cluster's fitted one
    assert page.locator("#clusters li.active").get_attribute("data-cluster") == str(top)
    assert errors == []


def test_a_link_reproduces_a_selection_under_filters_and_back_restores_the_zoom(console, server,
                                                                                digits_run: imgcluster.Run) -> None:
    from .test_browser_views import set_range

    page, errors = console
    open_app(page, server, digits_run.key)
    page.wait_for_selector("#filter-probability", state="attached")
    set_range(page, "#filter-probability", 0.5)
    page.wait_for_selector("#filtered-grid")
    whole = page.evaluate("imgclusterMap.camera()")
    select_box(page, 0.25, 0.75)
    selected = page.evaluate("Array.from(S.selection, (row) => S.map.id[row])")
    grid = page.evaluate("[...document.querySelectorAll('#selection-grid figure')].map((f) => f.dataset.id)")
    title = page.inner_text("#panel-title")
    probability = dict(zip(np.asarray(digits_run.assignments.image_ids).tolist(),
                           np.asarray(digits_run.assignments.membership_probability).tolist()))
    shown = int(title.split()[0])
    assert 0 < shown == sum(probability[i] >= np.float32(0.5) for i in selected) < len(digits_run.images)
    camera = zoom_in(page)
    link = page.url
    assert "sel=" in link and "minp=0.5" in link

    page.go_back()  # the filtered overview, before the selection: at its own zoom
    page.wait_for_selector("#filtered-grid")
    assert page.evaluate("S.selection") is None
    same_camera(page, whole)
    page.go_forward()
    page.wait_for_selector("#selection-grid figure")
    assert page.evaluate("Array.from(S.selection, (row) => S.map.id[row])") == selected
    same_camera(page, camera)

    page.goto("about:blank")
    page.goto(link)  # a fresh page from the link alone
    page.wait_for_selector("#selection-grid figure", timeout=30_000)
    page.wait_for_function(f"document.body.dataset.opened === {digits_run.key!r}")
    assert page.evaluate("Array.from(S.selection, (row) => S.map.id[row])") == selected
    assert page.inner_text("#panel-title") == title
    page.wait_for_function(f"document.querySelectorAll('#selection-grid figure').length >= {min(len(grid), 60)}")
    assert page.evaluate("[...document.querySelectorAll('#selection-grid figure')].map((f) => f.dataset.id)")[:60] \
        == grid[:60]
    assert page.evaluate("imgclusterView.state().filters") == {"minp": 0.5}
    same_camera(page, camera)
    assert errors == []


def test_every_page_opens_without_a_console_error(console, server, digits_run: imgcluster.Run) -> None:
    """The app's pages one after another (overview, run info, comparison, a cluster, an image, a
    selection, the filtered view), the API docs and the report: none logs an error or fails a request."""
    from .test_browser_views import set_range

    page, errors = console
    open_app(page, server, digits_run.key)
    page.click("#info-button")
    page.wait_for_selector("#run-info")
    page.select_option("#compare", digits_run.key)
    page.wait_for_selector("#compare-matching td")
    cluster = next(c.cluster for c in digits_run.clusters() if c.cluster != -1)
    page.click(f"#clusters li[data-cluster='{cluster}']")
    page.wait_for_selector("#cluster-grid figure img")
    page.click("#cluster-grid figure")
    page.wait_for_selector("#neighbours figure")
    page.keyboard.press("Escape")
    select_box(page, 0.3, 0.7)
    page.keyboard.press("Escape")
    set_range(page, "#filter-probability", 0.9)
    page.wait_for_selector("#filtered-grid figure")
    page.wait_for_function("[...document.querySelectorAll('#panel-body img')].slice(0, 12).every((i) => i.complete)")
    page.goto(server.url + "/api/docs")
    page.wait_for_selector("body[data-ready]")
    page.goto(Path(digits_run.outputs["report"]).as_uri())
    page.wait_for_selector("#legend .chip")
    assert errors == []


def test_a_link_with_a_malformed_selection_opens_the_overview(console, server, digits_run: imgcluster.Run) -> None:
    """A hand-edited or cut-off link (sel= with too few or non-numeric points) shows the run's
    overview, not an empty panel."""
    page, errors = console
    for sel in ("1,2,3", "a,b,c,d,e,f"):
        page.goto("about:blank")
        page.goto(f"{server.url}/#run={digits_run.key}&sel={sel}")
        page.wait_for_function(f"document.body.dataset.opened === {digits_run.key!r}", timeout=60_000)
        assert page.inner_text("#panel-title") == "Clusters"
        assert page.evaluate("S.selection") is None
    assert errors == []
