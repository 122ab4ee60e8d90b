"""The cluster tree in the web app beyond the colours: the cluster list grouped by the slider's level
(nodes that open onto their clusters) and map labels at two levels (the coarse cut's names large, the
clusters' own smaller, once zoomed in)."""

from __future__ import annotations

import httpx
import numpy as np

import imgcluster

from .conftest import open_app
from .test_browser_views import set_range


def tree_of(server, run: imgcluster.Run) -> tuple[dict[int, dict], int]:
    """The tree the page gets: its nodes by id, and the coarse cut's size."""
    data = httpx.get(f"{server.url}/api/tree", params={"run": run.key}).json()
    return {n["id"]: n for n in data["nodes"]}, data["coarse"]


def groups_at(run: imgcluster.Run, k: int) -> dict[int, set[int]]:
    """The cut at k clusters: each node's id and the run's clusters (leaves) under it."""
    cut, clusters = np.asarray(run.cut(k)), np.asarray(run.assignments.clusters)
    groups: dict[int, set[int]] = {}
    for leaf in run.tree.clusters:
        groups.setdefault(int(cut[clusters == leaf][0]), set()).add(int(leaf))
    return groups


def set_level(page, k: int) -> None:
    page.locator("#level").fill(str(k))
    page.wait_for_selector(f"body[data-level='{k}']")


def visible_rows(page) -> list[str]:
    """The cluster list's rows in view, as 'node N' or 'cluster C'."""
    return page.eval_on_selector_all(
        "#clusters li", "items => items.filter(i => !i.hidden).map(i => i.classList.contains('node') ? "
        "'node ' + i.dataset.node : 'cluster ' + i.dataset.cluster)")


def test_a_coarser_level_groups_the_cluster_list_under_nodes_that_open(console, server,
                                                                      digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    nodes, _ = tree_of(server, digits_run)
    leaves = len(digits_run.tree.clusters)
    fine = page.locator("#clusters").inner_text()
    assert page.locator("#clusters li.node").count() == 0  # at the leaves the list is the run's clusters
    assert all(row.startswith("cluster") for row in visible_rows(page))

    k = 3
    set_level(page, k)
    groups = groups_at(digits_run, k)
    merged = {node: leaves_ for node, leaves_ in groups.items() if len(leaves_) > 1}
    assert merged and page.locator("#clusters li.node").count() == len(merged)
    # Collapsed: a row per node of the cut (a node that is one cluster is that cluster's row), plus unclustered.
    shown = visible_rows(page)
    assert {r for r in shown if r != "cluster -1"} == {f"node {n}" if n in merged else f"cluster {next(iter(g))}"
                                                      for n, g in groups.items()}
    for node, under in merged.items():
        row = page.locator(f"#clusters li.node[data-node='{node}']")
        assert row.get_attribute("aria-expanded") == "false"
        assert row.locator(".name").inner_text() == nodes[node]["name"]
        assert row.locator(".size").inner_text() == str(nodes[node]["size"])
        colour = row.locator(".sw").evaluate("e => e.style.background")
        assert {page.locator(f"#clusters li[data-cluster='{leaf}'] .sw").evaluate("e => e.style.background")
                for leaf in under} == {colour}  # the node's colour is its clusters' colour at this level

    # Click opens a node onto its clusters, right under it; Enter closes it again.
    node, under = max(merged.items(), key=lambda item: len(item[1]))
    page.click(f"#clusters li.node[data-node='{node}']")
    page.wait_for_selector(f"#clusters li.node[data-node='{node}'][aria-expanded='true']")
    shown = visible_rows(page)
    at = shown.index(f"node {node}")
    assert set(shown[at + 1:at + 1 + len(under)]) == {f"cluster {leaf}" for leaf in under}
    page.focus(f"#clusters li.node[data-node='{node}']")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#clusters li.node[data-node='{node}'][aria-expanded='false']")
    assert not set(visible_rows(page)) & {f"cluster {leaf}" for leaf in under}
    page.keyboard.press("Enter")  # the keys stay on the node's row after it is drawn anew
    page.wait_for_selector(f"#clusters li.node[data-node='{node}'][aria-expanded='true']")

    # Picking a cluster under a node opens its grid; the row stays in view, marked.
    leaf = min(under)
    page.click(f"#clusters li[data-cluster='{leaf}']")
    page.wait_for_selector(f"#cluster-grid[data-cluster='{leaf}'] figure")
    assert page.locator(f"#clusters li.active[data-cluster='{leaf}']").is_visible()
    page.click(f"#clusters li.node[data-node='{node}']")  # and its node still closes
    page.wait_for_selector(f"#clusters li.node[data-node='{node}'][aria-expanded='false']")
    # A cluster opened from elsewhere (the map, a link) opens its node too.
    other = next((g for n, g in merged.items() if n != node), under)
    page.evaluate("c => showCluster(c)", min(other))
    page.wait_for_selector(f"#clusters li.active[data-cluster='{min(other)}']", state="visible")
    page.keyboard.press("Escape")

    # Filters: a node counts the shown images of its clusters, as its clusters' rows do.
    set_range(page, "#filter-probability", 0.9)
    page.wait_for_function("imgclusterView.state().active")
    probability = np.asarray(digits_run.assignments.membership_probability)
    clusters = np.asarray(digits_run.assignments.clusters)
    for node, under in merged.items():
        kept = int(sum(((clusters == leaf) & (probability >= np.float32(0.9))).sum() for leaf in under))
        size = page.locator(f"#clusters li.node[data-node='{node}'] .size").inner_text()
        assert size == f"{kept}/{nodes[node]['size']}"
    page.click("#filters-clear")
    page.wait_for_function("!imgclusterView.state().active")

    set_level(page, leaves)  # back at the leaves: the list as it was
    assert page.locator("#clusters li.node").count() == 0
    assert page.locator("#clusters").inner_text() == fine
    assert errors == []


def overlaps(labels: list[dict]) -> list[tuple[str, str]]:
    found = []
    for i, a in enumerate(labels):
        x0, y0, x1, y1 = a["box"]
        for b in labels[i + 1:]:
            u0, v0, u1, v1 = b["box"]
            if not (x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0):
                found.append((a["text"], b["text"]))
    return found


def test_the_map_labels_the_coarse_level_large_and_the_clusters_smaller_as_you_zoom_in(
        console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    nodes, coarse = tree_of(server, digits_run)
    leaves = len(digits_run.tree.clusters)
    assert 1 < coarse < leaves  # the digits' tree has a coarser level than its clusters

    def coarse_names(k: int) -> set[str]:
        names = set()
        for n, under in groups_at(digits_run, k).items():
            name, leaf = nodes[n]["name"], next(iter(under))
            names.add(name if len(under) > 1 or name == f"cluster {leaf}" else f"{leaf} · {name}")
        return names

    def labels() -> list[dict]:
        return page.evaluate("window.imgclusterMap.labels()")

    page.wait_for_selector(f"body[data-label-level='{coarse}']")
    whole = labels()
    big = [label for label in whole if label["level"] == "coarse"]
    assert big and not overlaps(whole)
    assert {label["text"] for label in big} <= {name if len(name) <= 30 else name[:29] + "…" for name in coarse_names(coarse)}
    assert all(label["level"] == "coarse" for label in whole)  # the whole map: the coarse names only

    # Zoomed in on the biggest coarse label: the clusters' own names join, in smaller type.
    box = page.locator("#map").bounding_box()
    x0, y0, x1, y1 = big[0]["box"]
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)
    for _ in range(3):
        page.mouse.wheel(0, -300)
    page.wait_for_function("window.imgclusterMap.labels().some(l => l.level === 'fine')")
    near = labels()
    fine = [label for label in near if label["level"] == "fine"]
    big = [label for label in near if label["level"] == "coarse"]
    assert fine and not overlaps(near)
    if big:
        assert max(label["px"] for label in fine) < min(label["px"] for label in big)
    assert all(label["cluster"] in digits_run.tree.clusters for label in fine)

    # The slider's level, when coarser than the leaves, is the level the large labels name.
    page.click("#reset")
    set_level(page, 2)
    page.wait_for_selector("body[data-label-level='2']")
    two = [label for label in labels() if label["level"] == "coarse"]
    assert two and {label["text"] for label in two} <= {n if len(n) <= 30 else n[:29] + "…" for n in coarse_names(2)}
    page.click("#labels")
    assert labels() == []  # the Labels button hides both levels
    assert errors == []
