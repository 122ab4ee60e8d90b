"""The coarse ↔ fine control: moving it recolours the map and the cluster list by a cut of the run's
cluster tree, fetched once per run (no request per step)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

import imgcluster


def coloured_pixels(page, path: Path) -> np.ndarray:
    """The saturated pixels of the map (cluster colours, not paper or grey noise), (m, 3), below the
    tools over its top (the slider's blue is no cluster's)."""
    box, tools = page.locator("#map").bounding_box(), page.locator("#tools").bounding_box()
    top = tools["y"] + tools["height"] + 2
    page.screenshot(path=str(path), clip={"x": box["x"], "y": top, "width": box["width"],
                                          "height": box["y"] + box["height"] - top})
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(float)
    return pixels[(pixels.max(axis=1) - pixels.min(axis=1)) > 50]


def share_near(pixels: np.ndarray, css: set[str]) -> float:
    """The share of ``pixels`` of the hue of one of the ``css`` colours ("rgb(r, g, b)"): a colour
    keeps its hue drawn opaque, at the map's alpha over the paper, or blended into the edge of a
    thumbnail's frame."""
    def hue(rgb: np.ndarray) -> np.ndarray:
        return np.array([colorsys.rgb_to_hsv(*(row / 255))[0] for row in rgb])

    colours = np.array([[float(v) for v in c[4:-1].split(",")] for c in css])
    apart = np.abs(hue(pixels)[:, None] - hue(colours)[None, :])
    return float(np.mean(np.minimum(apart, 1 - apart).min(axis=1) < 12 / 360))


def swatches(page) -> dict[int, str]:
    return page.eval_on_selector_all(
        "#clusters li[data-cluster]",
        "items => Object.fromEntries(items.filter(i => Number(i.dataset.cluster) >= 0)"
        ".map(i => [i.dataset.cluster, i.querySelector('.sw').style.background]))")


def test_the_level_control_recolours_the_map_and_the_list_without_a_request_per_step(
        page, digits_run: imgcluster.Run, tmp_path: Path) -> None:
    leaves = len(digits_run.tree.clusters)
    assert page.get_attribute("body", "data-level") == str(leaves)  # the run's own clusters first
    fine_map, fine_list = coloured_pixels(page, tmp_path / "fine.png"), swatches(page)
    assert len(set(fine_list.values())) >= min(leaves, 5)

    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/" in request.url else None)
    for k in (leaves - 1, 4, 3, 2):  # coarse, step by step
        page.locator("#level").fill(str(k))
        page.wait_for_selector(f"body[data-level='{k}']")
    coarse_map, coarse_list = coloured_pixels(page, tmp_path / "coarse.png"), swatches(page)
    assert not [url for url in asked if "/api/tree" in url or "/api/clusters" in url]

    cut = digits_run.cut(2)
    clusters = np.asarray(digits_run.assignments.clusters)
    node_of = {leaf: int(cut[clusters == leaf][0]) for leaf in digits_run.tree.clusters}
    # The list: leaves of one node of the cut share its colour, the two nodes' colours differ.
    by_node: dict[int, set[str]] = {}
    for leaf, colour in coarse_list.items():
        by_node.setdefault(node_of[int(leaf)], set()).add(colour)
    assert len(by_node) == 2 and all(len(colours) == 1 for colours in by_node.values())
    assert len({next(iter(c)) for c in by_node.values()}) == 2
    # The map: drawn in those two colours now, where before most of it was in others.
    two = {next(iter(c)) for c in by_node.values()}
    assert share_near(coarse_map, two) > 0.8 and share_near(fine_map, two) < share_near(coarse_map, two) - 0.3

    page.locator("#level").fill(str(leaves))
    page.wait_for_selector(f"body[data-level='{leaves}']")
    assert swatches(page) == fine_list


def test_an_export_from_the_page_is_of_the_cut_the_slider_shows(console, server, digits_run: imgcluster.Run,
                                                                tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    from .conftest import open_app
    from .test_browser_views import export_from_panel

    page, errors = console
    open_app(page, server, digits_run.key)
    clusters = np.asarray(digits_run.assignments.clusters)
    top = int(np.bincount(clusters[clusters >= 0]).argmax())
    page.click(f"#clusters li[data-cluster='{top}']")
    page.wait_for_selector("#cluster-grid figure")
    page.locator("#level").fill("2")  # the cluster stays open; the slider now shows 2 clusters
    page.wait_for_selector("body[data-level='2']")
    export_from_panel(page, "csv", tmp_path / "two.csv")
    table = pacsv.read_csv(tmp_path / "two.csv").to_pydict()
    node = int(digits_run.cut(2)[clusters == top][0])  # the cluster's node at 2 clusters
    assert len(table["path"]) == int((clusters == top).sum()) and set(table["cluster"]) == {node} != {top}
    assert errors == []
