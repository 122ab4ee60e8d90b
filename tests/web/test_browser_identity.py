"""The web app in Debian's Chromium, as a user tells clusters and runs apart: the comparison's rows
show ids and names, the cluster list shows ids, the tooltip names the file, the report and the app
colour a cluster alike, errors look like errors, the API docs work offline, Esc closes and picking a
cluster zooms to it. No page may log a console error."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np

import imgcluster
from imgcluster.palette import map_colours

from .conftest import open_app, select_box, wait_until_opened


def test_the_comparison_lists_matched_split_and_merged_clusters_by_id_and_name(console, server,
                                                                              digits_run: imgcluster.Run) -> None:
    page, errors = console
    clusters = sorted((c for c in digits_run.clusters() if c.cluster != -1), key=lambda c: -c.size)
    a, b = clusters[0].cluster, clusters[1].cluster
    open_app(page, server, digits_run.key)
    for cluster in (a, b):
        page.check(f"#clusters li[data-cluster='{cluster}'] input.pick")
    page.click("#merge")
    page.click("#merge-go")
    wait_until_opened(page, not_key=digits_run.key)
    assert page.locator("#merge-bar").is_hidden()  # the merge is done: its bar goes
    merged = {"run": page.evaluate("S.run")}
    page.select_option("#compare", digits_run.key)
    page.wait_for_selector("#compare-matching td")

    rows = page.locator("#compare-matching tr:has(td)")
    expected = httpx.get(f"{server.url}/api/runs/{merged['run']}/compare/{digits_run.key}", timeout=60).json()
    assert rows.count() == len(expected["matching"]) >= digits_run.record.n_clusters - 2
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert re.fullmatch(r"\d+ · \S.*", cells[0]) and re.fullmatch(r"\d+ · \S.*", cells[1]), cells
        assert 0 < float(cells[3]) <= 1 and int(cells[2].replace(",", "")) > 0, cells
    # The merged run's cluster holds both of the original's: a split seen from the merged run.
    split = page.inner_text("#compare-splits")
    names = digits_run.names
    for cluster in (a, b):
        assert f"{cluster} · {names[cluster].name if cluster in names else f'cluster {cluster}'}" in split
    body = page.inner_text("#panel-body")
    assert "undefined" not in body and "{" not in body  # no raw JSON
    assert errors == []


def test_the_cluster_list_shows_ids_and_the_tooltip_names_the_file(console, server,
                                                                    digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    items = page.locator("#clusters li")
    shown = {}
    for i in range(items.count()):
        item = items.nth(i)
        cluster = int(item.get_attribute("data-cluster"))
        if cluster >= 0:
            shown[cluster] = item.locator(".cid").inner_text()
    assert shown == {c.cluster: str(c.cluster) for c in digits_run.clusters() if c.cluster != -1}

    row = page.evaluate("[...S.map.cluster].findIndex(c => c >= 0)")
    x, y = page.evaluate(f"window.imgclusterMap.toScreen(S.map.x[{row}], S.map.y[{row}])")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#tip:not([hidden])")
    page.wait_for_function("!document.querySelector('#tip span').textContent.startsWith('…')")
    shown_id = int(page.get_attribute("#tip span", "data-id"))
    image = httpx.get(f"{server.url}/api/images/{shown_id}", params={"run": page.evaluate("S.run")}).json()
    text = page.inner_text("#tip span")
    assert text.startswith(image["name"] + " · ") and f"#{shown_id}" not in text
    assert str(image["cluster"]) in text
    page.mouse.move(box["x"] - 20, box["y"] + y)  # the pointer leaves the map: the tooltip goes
    page.wait_for_selector("#tip", state="hidden")
    assert errors == []


def test_the_report_and_the_app_colour_each_cluster_alike_and_distinctly(console, server,
                                                                         digits_run: imgcluster.Run) -> None:
    page, errors = console
    page.goto(digits_run.outputs["report"].as_uri())
    page.wait_for_selector("#legend .chip .swatch")
    report = page.evaluate("Object.fromEntries([...document.querySelectorAll('#legend .chip')].map(c => "
                           "[c.dataset.cluster, getComputedStyle(c.querySelector('.swatch')).backgroundColor]))")
    open_app(page, server, digits_run.key)
    app = page.evaluate("Object.fromEntries([...document.querySelectorAll('#clusters li')].map(c => "
                        "[c.dataset.cluster, getComputedStyle(c.querySelector('.sw')).backgroundColor]))")
    assert report == app and len(app) == len(digits_run.clusters())
    assert len(set(app.values())) == len(app)  # no two clusters share a colour
    # Both are the colours chosen from the run's map, so that clusters next to each other differ.
    chosen = map_colours(np.asarray(digits_run.assignments.x), np.asarray(digits_run.assignments.y),
                         np.asarray(digits_run.assignments.clusters))
    rgb = {str(c): "rgb({}, {}, {})".format(*(int(hexa[i:i + 2], 16) for i in (1, 3, 5))) for c, hexa in chosen.items()}
    assert {c: v for c, v in app.items() if c != "-1"} == rgb
    assert errors == []


def test_an_error_is_shown_in_full_apart_from_the_status_line(console, server) -> None:
    page, errors = console
    open_app(page, server)
    long_query = "a photograph of " + "a very particular thing, " * 12
    page.fill("#search", long_query)
    page.press("#search", "Enter")  # the digits run's model has no text tower: the server refuses
    page.wait_for_selector("#error:not([hidden])")
    banner = page.locator("#error")
    assert page.inner_text("#error-text").strip() and page.inner_text("#status") == ""
    style = page.evaluate("[getComputedStyle(document.querySelector('#error')).backgroundColor, "
                          "getComputedStyle(document.querySelector('#status')).color]")
    assert style[0] not in ("rgba(0, 0, 0, 0)", "rgb(29, 35, 42)")  # a banner of its own, not the header
    assert page.evaluate("(() => { const t = document.querySelector('#error-text'); "
                         "return t.scrollWidth <= t.clientWidth && t.scrollHeight <= t.clientHeight + 1; })()")
    assert banner.bounding_box()["width"] > 0
    page.keyboard.press("Escape")
    assert page.locator("#error").is_hidden()
    refusal = ("/api/search", "status of 409 (Conflict)")  # the refusal itself, as Chromium logs it
    errors[:] = [e for e in errors if not any(part in e for part in refusal)]
    assert errors == []


def test_the_api_docs_work_offline_and_no_page_asks_for_a_missing_favicon(console, server) -> None:
    page, errors = console
    open_app(page, server)
    page.wait_for_timeout(300)
    assert httpx.get(server.url + "/favicon.ico").status_code == 200
    page.goto(server.url + "/api/docs")
    page.wait_for_selector("body[data-ready]")
    paths = httpx.get(server.url + "/api/openapi.json").json()["paths"]
    assert int(page.get_attribute("body", "data-ready")) == len(paths)
    assert page.locator(".endpoint[data-method='GET'][data-path='/api/clusters/{cluster}/images']").count() == 1
    assert errors == []


def test_picking_a_cluster_zooms_to_it_and_esc_closes_it(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    whole = page.evaluate("window.imgclusterMap.camera().k")
    cluster = min((c for c in digits_run.clusters() if c.cluster != -1), key=lambda c: c.size).cluster
    page.click(f"#clusters li[data-cluster='{cluster}'] .name")
    page.wait_for_selector(f"#cluster-grid[data-cluster='{cluster}']")
    assert page.evaluate("window.imgclusterMap.camera().k") > whole
    box = page.locator("#map").bounding_box()
    inside = page.evaluate(f"""(() => {{ const m = S.map, out = [];
        for (let i = 0; i < m.n; i++) if (m.cluster[i] === {cluster}) out.push(window.imgclusterMap.toScreen(m.x[i], m.y[i]));
        return out.every(([x, y]) => x >= 0 && y >= 0 && x <= {box['width']} && y <= {box['height']}); }})()""")
    assert inside  # every image of the cluster is in view
    page.keyboard.press("Escape")
    assert page.inner_text("#panel-title") == "Clusters"
    assert page.locator("#clusters li.active").count() == 0
    assert errors == []


def test_a_selection_names_its_images_by_file(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    select_box(page, 0.1, 0.9)
    figures = page.locator("#selection-grid figure")
    ids = [int(figures.nth(i).get_attribute("data-id")) for i in range(min(5, figures.count()))]
    names = {r.id: Path(r.path).name for r in digits_run.images}
    for i, image_id in enumerate(ids):
        caption = figures.nth(i).locator("figcaption").inner_text()
        assert caption.startswith(names[image_id] + " · ") and "#" not in caption, caption
    assert errors == []


def test_image_names_come_in_one_request_and_bad_ids_are_refused(server, digits_run: imgcluster.Run) -> None:
    ids = [r.id for r in digits_run.images[:3]]
    found = httpx.get(f"{server.url}/api/images", params={"ids": ",".join(map(str, [*ids, 10**12]))}).json()
    assert found["images"] == [{"id": r.id, "name": Path(r.path).name} for r in digits_run.images[:3]]
    for bad in ("", "1,,2", "a", ",".join(["1"] * 501)):
        assert httpx.get(f"{server.url}/api/images", params={"ids": bad}).status_code == 422


def test_the_map_labels_its_clusters_without_overlap_and_zooming_makes_them_bigger(console, server,
                                                                                  digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    page.wait_for_selector("body[data-labels]")
    labels = page.evaluate("window.imgclusterMap.labels()")
    box = page.locator("#map").bounding_box()
    names = digits_run.names
    expected = {c.cluster: f"{c.cluster} · {names[c.cluster].name}" if c.cluster in names else f"cluster {c.cluster}"
                for c in digits_run.clusters() if c.cluster != -1}

    def check(labels: list[dict]) -> None:
        for i, label in enumerate(labels):
            if label["cluster"] is not None:  # else a coarser tree node's name (tests/web/test_tree_levels.py)
                full = expected[label["cluster"]]
                assert label["text"] == full or (label["text"].endswith("…") and full.startswith(label["text"][:-1]))
            x0, y0, x1, y1 = label["box"]
            assert 0 <= x0 < x1 <= box["width"] and 0 <= y0 < y1 <= box["height"]
            for other in labels[i + 1:]:
                u0, v0, u1, v1 = other["box"]
                assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0, (label, other)  # no two overlap

    assert labels  # the whole map: the tree's coarse level names its parts; the clusters' names come closer
    check(labels)
    x0, y0, x1, y1 = labels[0]["box"]
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)  # zoom on the biggest label
    for _ in range(3):
        page.mouse.wheel(0, -300)
    page.wait_for_function(f"window.imgclusterMap.labels().length && "
                           f"window.imgclusterMap.labels()[0].px > {labels[0]['px']}")
    zoomed = page.evaluate("window.imgclusterMap.labels()")
    assert len(zoomed) >= 3 and any(label["level"] == "fine" for label in zoomed)
    check(zoomed)
    page.click("#labels")
    assert page.evaluate("window.imgclusterMap.labels().length") == 0  # the button hides them
    assert errors == []


def test_every_header_control_is_in_view_at_1024_px(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    page.set_viewport_size({"width": 1024, "height": 720})
    open_app(page, server, digits_run.key)
    for control in ("#run", "#info-button", "#compare", "#search", "label[for='upload']"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1024, control
    assert errors == []


def test_back_and_forward_walk_through_the_views_opened(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    first, second = [c.cluster for c in digits_run.clusters() if c.cluster != -1][:2]
    for cluster in (first, second):
        page.click(f"#clusters li[data-cluster='{cluster}'] .name")
        page.wait_for_selector(f"#cluster-grid[data-cluster='{cluster}']")
    page.go_back()
    page.wait_for_selector(f"#cluster-grid[data-cluster='{first}']")
    assert page.locator("#clusters li.active").get_attribute("data-cluster") == str(first)
    page.go_back()
    page.wait_for_function("document.querySelector('#panel-title').textContent === 'Clusters'")
    page.go_forward()
    page.wait_for_selector(f"#cluster-grid[data-cluster='{first}']")
    page.reload()  # the link alone reproduces the view
    page.wait_for_selector(f"#cluster-grid[data-cluster='{first}']")
    assert errors == []
