"""The coarse ↔ fine control below a run's clusters: on a run whose clusters hold well separated parts
the slider goes down to the tree's leaves, each point shown in its stored leaf's colour, the split
clusters' parts listed by their tree names, and an export of that cut. Each point's leaf comes in a
request of its own (/api/runs/KEY/leaves, one byte a point), only once the slider goes there."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import imgcluster

from .conftest import LiveServer, open_app
from .test_browser_views import export_from_panel
from .test_tree_control import coloured_pixels, share_near


@pytest.fixture(scope="module")
def parts_run(digits_dir: Path, digits_run: imgcluster.Run,
              tmp_path_factory: pytest.TempPathFactory) -> imgcluster.Run:
    """k-means told 5 clusters on the digits (a copy of their workspace, with the digits run: nothing is
    embedded again): two of them hold well separated parts, 8 leaves in all."""
    copy = tmp_path_factory.mktemp("parts") / "ws"
    shutil.copytree(digits_run.workspace, copy, ignore=shutil.ignore_patterns("lock"))
    run = imgcluster.cluster(digits_dir / "images", method="kmeans", k=5, workspace=copy, run_key="parts")
    assert len(run.tree.leaves) > run.tree.n_clusters  # what this module is about
    return run


@pytest.fixture(scope="module")
def server(parts_run: imgcluster.Run) -> Iterator[LiveServer]:
    """The app over the parts run's workspace (the conftest's ``console`` page uses it)."""
    with LiveServer(Path(parts_run.workspace)) as live:
        yield live


def stored_leaves(server: LiveServer, run: imgcluster.Run) -> tuple[np.ndarray, np.ndarray]:
    """Each map point's image id and its leaf, read from /api/runs/KEY/map and /leaves with the tree."""
    body = httpx.get(f"{server.url}/api/runs/{run.key}/map").content
    n = len(body) // 16
    clusters, ids = np.frombuffer(body, np.int32, n, 8 * n), np.frombuffer(body, np.int32, n, 12 * n)
    response = httpx.get(f"{server.url}/api/runs/{run.key}/leaves")
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    place = np.frombuffer(response.content, np.uint8)
    assert len(place) == n  # one byte a point, in the map's order
    leaves = np.array([run.tree.leaves_under(c)[p] if c >= 0 else -1 for c, p in zip(clusters.tolist(), place.tolist())])
    return ids, leaves


def test_the_leaves_endpoint_gives_each_map_point_its_stored_leaf(server, parts_run: imgcluster.Run,
                                                                  digits_run: imgcluster.Run) -> None:
    ids, leaves = stored_leaves(server, parts_run)
    stored = dict(zip(parts_run.assignments.image_ids.tolist(), parts_run.assignments.leaf_per_image().tolist()))
    assert leaves.tolist() == [stored[i] for i in ids.tolist()]
    assert len(set(leaves.tolist()) - {-1}) == len(parts_run.tree.leaves)
    # A run whose leaves are its clusters: every point's place is 0, its leaf its cluster.
    ids, leaves = stored_leaves(server, digits_run)
    clusters = dict(zip(digits_run.assignments.image_ids.tolist(), digits_run.assignments.clusters.tolist()))
    assert leaves.tolist() == [clusters[i] for i in ids.tolist()]
    assert httpx.get(f"{server.url}/api/runs/no-such-run/leaves").status_code == 404


def test_the_slider_goes_below_the_clusters_to_the_leaves(console, server, parts_run: imgcluster.Run,
                                                          digits_run: imgcluster.Run, tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    page, errors = console
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/leaves" in request.url else None)
    open_app(page, server, parts_run.key)
    tree, own = parts_run.tree, parts_run.tree.n_clusters
    finest = len(tree.leaves)
    assert page.get_attribute("#level", "max") == str(finest) and page.input_value("#level") == str(own)
    assert page.get_attribute("body", "data-level") == str(own)  # the run's own clusters first
    assert asked == []  # the map's first frame never waited for the leaves
    run_map = coloured_pixels(page, tmp_path / "clusters.png")
    run_swatches = page.eval_on_selector_all("#clusters li[data-cluster] .sw", "s => s.map(e => e.style.background)")

    page.locator("#level").fill(str(finest))
    page.wait_for_selector(f"body[data-level='{finest}']")
    assert len(asked) == 1
    page.screenshot(path=str(tmp_path / "leaves-page.png"))
    # Each point shows its stored leaf, in the colour of that leaf: as many colours as leaves, more than clusters.
    shown = page.evaluate("() => { const colour = View.colourer(), leaves = LEVEL.pointLeaves();"
                          " return Array.from({ length: S.map.n }, (_, i) => [S.map.id[i], leaves[i], colour(i).join(', ')]); }")
    stored = dict(zip(parts_run.assignments.image_ids.tolist(), parts_run.assignments.leaf_per_image().tolist()))
    assert all(leaf == stored[image] for image, leaf, _ in shown)
    colour_of: dict[int, set[str]] = {}
    for _, leaf, colour in shown:
        colour_of.setdefault(leaf, set()).add(colour)
    assert all(len(colours) == 1 for colours in colour_of.values())
    clustered = {leaf: next(iter(c)) for leaf, c in colour_of.items() if leaf >= 0}
    assert len(clustered) == finest > own and len(set(clustered.values())) == finest

    # The list: each split cluster's row, then a row per part, named as the tree names it, in its points' colour.
    nodes = {n["id"]: n for n in httpx.get(f"{server.url}/api/tree", params={"run": parts_run.key}).json()["nodes"]}
    parts = page.eval_on_selector_all("#clusters li.part", "items => items.map(i => [Number(i.dataset.node), "
                                      "Number(i.dataset.in), i.querySelector('.name').dataset.name, "
                                      "i.querySelector('.sw').style.background])")
    split = [c for c in tree.clusters if len(tree.leaves_under(c)) > 1]
    assert sorted(node for node, _, _, _ in parts) == sorted(leaf for c in split for leaf in tree.leaves_under(c))
    for node, cluster, name, swatch in parts:
        assert node in tree.leaves_under(cluster) and name == nodes[node]["name"] == parts_run.node_names()[node]
        assert " · part " in name and swatch == f"rgb({clustered[node]})"
    # The map: the parts' own colours are drawn now, and were not at the run's clusters.
    part_colours = {f"rgb({clustered[leaf]})" for c in split for leaf in tree.leaves_under(c)} - set(run_swatches)
    leaf_map = coloured_pixels(page, tmp_path / "leaves.png")
    assert part_colours and share_near(leaf_map, part_colours) > share_near(run_map, part_colours) + 0.05

    # One step above the leaves: a node over two parts reads "<name> · parts 1-2" (or the like) where one is.
    page.locator("#level").fill(str(finest - 1))
    page.wait_for_selector(f"body[data-level='{finest - 1}']")
    cut = np.asarray(parts_run.cut(finest - 1))
    names = page.eval_on_selector_all("#clusters li.part .name", "s => s.map(e => e.dataset.name)")
    expected = {nodes[n]["name"] for n in set(cut.tolist()) - {-1} - set(tree.clusters)}
    assert set(names) == expected and len(asked) == 1  # the leaves came once

    # Export of the slider's cut: each image's cluster is its node at that cut, named from the tree.
    page.locator("#level").fill(str(finest))
    page.wait_for_selector(f"body[data-level='{finest}']")
    export_from_panel(page, "csv", tmp_path / "leaves.csv")
    table = pacsv.read_csv(tmp_path / "leaves.csv").to_pydict()
    fine = dict(zip((r.path for r in parts_run.images), np.asarray(parts_run.cut("fine")).tolist()))
    assert [fine[p] for p in table["path"]] == table["cluster"] and len(set(table["cluster"]) - {-1}) == finest
    assert {n for c, n in zip(table["cluster"], table["name"]) if c not in tree.clusters and c >= 0} <= \
        {nodes[leaf]["name"] for leaf in tree.leaves}

    # Back at the run's clusters: their colours, no part rows.
    page.locator("#level").fill(str(own))
    page.wait_for_selector(f"body[data-level='{own}']")
    assert page.locator("#clusters li.part").count() == 0
    assert page.eval_on_selector_all("#clusters li[data-cluster] .sw", "s => s.map(e => e.style.background)") == run_swatches

    # A run whose leaves are its clusters (the digits run): the slider stops at them, as before.
    open_app(page, server, digits_run.key)
    page.wait_for_function(f"document.body.dataset.opened === {digits_run.key!r}")
    assert page.get_attribute("#level", "max") == page.input_value("#level") == str(digits_run.tree.n_clusters)
    assert errors == []
