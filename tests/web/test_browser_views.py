"""The web app in Debian's Chromium, as a user colours and filters a run's map: colour-by changes the
colours the map draws, filters compose and the map, the cluster list and the grids (a cluster's, the
filtered view's, an image's nearest images, text search results) follow them. No page may log a
console error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imgcluster

from .conftest import open_app, wait_until_opened

# The map's pixels that are not background, and how many carry the most common colour (in-page,
# from the WebGL canvas, which keeps its drawing buffer).
DRAWN = """() => {
  const map = document.querySelector('#map'), copy = document.createElement('canvas');
  copy.width = map.width; copy.height = map.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(map, 0, 0);
  const data = ctx.getImageData(0, 0, copy.width, copy.height).data, seen = new Map();
  let drawn = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] > 245 && data[i + 1] > 245 && data[i + 2] > 245) continue;
    drawn++;
    const key = (data[i] >> 3) + ',' + (data[i + 1] >> 3) + ',' + (data[i + 2] >> 3);
    seen.set(key, (seen.get(key) || 0) + 1);
  }
  return { drawn, top: Math.max(0, ...seen.values()) };
}"""


def drawn(page) -> dict[str, int]:
    page.wait_for_timeout(400)  # the full frame after the level-of-detail one
    return page.evaluate(DRAWN)


def set_range(page, selector: str, value: float) -> None:
    page.evaluate("([s, v]) => { const r = document.querySelector(s); r.value = v; r.dispatchEvent(new Event('change')); }",
                  [selector, str(value)])


def test_colour_by_changes_the_colours_the_map_draws(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    page.wait_for_selector("#colour-by")
    by_cluster = drawn(page)
    assert by_cluster["drawn"] > 0
    how = page.evaluate("imgclusterView.state().how")
    page.select_option("#colour-by", "how")
    page.wait_for_selector("body[data-colour-by='how']")
    by_how = drawn(page)
    # Every point keeps its place; with one way of placing images (or one far more common) one colour
    # dominates, where ten clusters share the map by colour.
    assert abs(by_how["drawn"] - by_cluster["drawn"]) < 0.1 * by_cluster["drawn"]
    if len(how) == 1:
        assert by_how["top"] > 2 * by_cluster["top"]
    assert set(page.locator("#legend .key").all_inner_texts()) == set(how)
    page.select_option("#colour-by", "probability")
    page.wait_for_selector("body[data-colour-by='probability']")
    assert drawn(page) != by_how
    assert "colour=probability" in page.url  # the link keeps the colouring
    assert errors == []


def test_filters_compose_and_the_map_list_and_grids_follow(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    open_app(page, server, digits_run.key)
    page.wait_for_selector("#filter-folder input", state="attached")
    before = drawn(page)
    folders = page.evaluate("imgclusterView.state().folders")
    assert len(folders) == 10  # the digits lie in one folder per label
    page.click("#view-controls summary")
    for value in range(1, len(folders)):  # keep the first folder only
        page.uncheck(f"#filter-folder input[value='{value}']")
    kept = folders[0]
    in_folder = [i for i, r in enumerate(digits_run.images) if Path(r.path).parent.name == kept]
    state = page.evaluate("imgclusterView.state()")
    assert state["shown"] == len(in_folder) and state["active"]
    after = drawn(page)
    assert after["drawn"] < 0.5 * before["drawn"]  # the map draws only the folder's points

    # The overview lists the filtered images, each from the kept folder.
    page.wait_for_selector("#filtered-grid figure")
    assert int(page.get_attribute("#filtered-grid", "data-filtered")) == len(in_folder)
    names = [c.split(" · ")[0] for c in page.locator("#filtered-grid figcaption").all_inner_texts()]
    folder_names = {Path(digits_run.images[i].path).name for i in in_folder}
    assert set(names) <= folder_names

    # A second filter composes with the first: membership probability of at least 0.9.
    set_range(page, "#filter-probability", 0.9)
    probability = np.asarray(digits_run.assignments.membership_probability)
    clusters = np.asarray(digits_run.assignments.clusters)
    both = [i for i in in_folder if probability[i] >= np.float32(0.9)]
    page.wait_for_function(f"imgclusterView.state().shown === {len(both)}")
    page.reload()  # the link holds the filters: a reload (or a shared link) shows the same view
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_function(f"imgclusterView.state().shown === {len(both)}")

    # The cluster list counts what is shown; a cluster's grid shows only its shown images.
    counts = {int(c): int((clusters[both] == c).sum()) for c in np.unique(clusters[both])}
    top = max(counts, key=counts.get)
    size = page.inner_text(f"#clusters li[data-cluster='{top}'] .size")
    assert size.split("/")[0] == str(counts[top])
    page.click(f"#clusters li[data-cluster='{top}']")
    page.wait_for_selector("#cluster-grid figure")
    assert int(page.get_attribute("#cluster-grid", "data-filtered")) == counts[top]
    captions = page.locator("#cluster-grid figcaption").all_inner_texts()
    assert all(float(c.split(" · ")[-1]) >= 0.9 for c in captions)
    page.go_back()  # Back to the overview keeps the filters it had
    page.wait_for_selector("#filtered-grid")
    assert page.evaluate("imgclusterView.state().shown") == len(both)

    page.click("#filters-clear")
    page.wait_for_function(f"imgclusterView.state().shown === {len(digits_run.images)}")
    assert not page.evaluate("imgclusterView.state().active")
    assert errors == []


def test_nearest_images_and_search_results_follow_the_filters(console, server, digits_run: imgcluster.Run) -> None:
    import json

    import httpx

    page, errors = console
    by_id = {r.id: r for r in digits_run.images}
    kept = sorted({Path(r.path).parent.name for r in digits_run.images})[0]
    in_folder = {r.id for r in digits_run.images if Path(r.path).parent.name == kept}
    image = min(in_folder)
    pool = httpx.get(f"{server.url}/api/images/{image}/neighbours", params={"run": digits_run.key, "k": 100},
                     timeout=60).json()["neighbours"]
    # The digits' model has no text tower: the search's answer is made up here, as the server would send it.
    asked: list[int] = []

    def search(route) -> None:
        k = int(dict(p.split("=", 1) for p in route.request.url.split("?", 1)[1].split("&"))["k"])
        asked.append(k)
        found = [{"id": r.id, "similarity": 0.5, "cluster": -1, "cluster_name": "unclustered"}
                 for r in sorted(digits_run.images, key=lambda r: r.id)[:k]]
        route.fulfill(status=200, content_type="application/json", body=json.dumps({"run": digits_run.key, "results": found}))

    page.route("**/api/search?*", search)
    page.goto(f"{server.url}/#run={digits_run.key}&image={image}")
    page.wait_for_selector("#neighbours figure")

    def shown(grid: str) -> list[int]:
        return [int(i) for i in page.eval_on_selector_all(f"#{grid} figure", "f => f.map((n) => n.dataset.id)")]

    assert shown("neighbours") == [n["id"] for n in pool[:12]]

    page.wait_for_selector("#filter-folder input", state="attached")
    folders = page.evaluate("imgclusterView.state().folders")
    page.click("#view-controls summary")
    for value in range(1, len(folders)):  # the image's page stays open and its grid follows each change
        page.uncheck(f"#filter-folder input[value='{value}']")
    page.wait_for_function(f"imgclusterView.state().shown === {len(in_folder)}")
    expected = [n["id"] for n in pool if n["id"] in in_folder][:12]
    page.wait_for_function(f"(() => {{ const g = document.querySelector('#neighbours'); return g && "
                           f"[...g.querySelectorAll('figure')].map((f) => Number(f.dataset.id)).join() === {','.join(map(str, expected))!r}; }})()")
    # The grid's figures can match before its last redraw (an earlier folder's unchecking hid none of
    # the first 12): wait for the count the final filters hide, as a person would see it settle.
    hidden = sum(n["id"] not in in_folder for n in pool)
    assert hidden > 0
    page.wait_for_function(f"Number(document.querySelector('#neighbours').dataset.hidden) === {hidden}")
    assert "hidden by the filters" in page.inner_text("#panel-body")
    assert page.inner_text("#panel-title") == Path(by_id[image].path).name  # still the image's page

    page.fill("#search", "a curly digit")
    page.press("#search", "Enter")
    page.wait_for_selector("#search-results figure")
    assert asked[-1] > 48  # a pool beyond what is shown: the filters hide some
    matching = [r.id for r in sorted(digits_run.images, key=lambda r: r.id)[:asked[-1]] if r.id in in_folder]
    assert shown("search-results") == matching[:48]
    assert set(shown("search-results")) <= in_folder
    page.click("#filters-clear")  # the results page stays, now unfiltered
    page.wait_for_function("document.querySelector('#search-results') && "
                           "Number(document.querySelector('#search-results').dataset.hidden) === 0")
    assert shown("search-results") == [r.id for r in sorted(digits_run.images, key=lambda r: r.id)[:48]]
    assert errors == []


def export_from_panel(page, to: str, dest: Path) -> str:
    """Press the panel's Export…, export as ``to`` into ``dest``; the message the page shows."""
    page.click("#export-open")
    page.wait_for_function("document.querySelector('#export-dest').value !== ''")  # the suggested place came
    page.select_option("#export-to", to)
    page.fill("#export-dest", str(dest))
    page.click("#export-go")
    page.wait_for_selector("#export-result[data-dest]")
    return page.inner_text("#export-result")


def test_export_writes_a_cluster_a_selection_and_the_filtered_view(console, server, digits_run: imgcluster.Run,
                                                                   tmp_path: Path) -> None:
    import json

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from .conftest import select_box

    page, errors = console
    open_app(page, server, digits_run.key)
    clusters = np.asarray(digits_run.assignments.clusters)
    ids = np.asarray(digits_run.assignments.image_ids)
    top = int(np.bincount(clusters[clusters >= 0]).argmax())

    # A cluster as CSV: its images, with its id on every row.
    page.click(f"#clusters li[data-cluster='{top}']")
    page.wait_for_selector("#cluster-grid figure")
    shown = export_from_panel(page, "csv", tmp_path / "cluster.csv")
    table = pacsv.read_csv(tmp_path / "cluster.csv").to_pydict()
    assert len(table["path"]) == int((clusters == top).sum()) and set(table["cluster"]) == {top}
    assert f"Exported {len(table['path'])} images" in shown
    # ... and as a Parquet download, through the same code.
    page.select_option("#export-to", "parquet")
    with page.expect_download() as download:
        page.click("#export-download")
    saved = tmp_path / "download.parquet"
    download.value.save_as(saved)
    assert pq.read_table(saved).to_pydict()["path"] == table["path"]

    # A selection on the map as a folder of links, one sub-folder per cluster.
    select_box(page, 0.3, 0.7)
    selected = page.evaluate("Array.from(S.selection, (row) => S.map.id[row])")
    export_from_panel(page, "folders", tmp_path / "selection")
    links = [p for p in (tmp_path / "selection").rglob("*") if p.is_symlink()]
    assert len(links) == len(selected) > 0
    paths = {r.id: Path(r.path).resolve() for r in digits_run.images}
    assert {p.resolve() for p in links} == {paths[i] for i in selected}

    # The filtered view as a FiftyOne dataset: its images only.
    page.keyboard.press("Escape")
    page.wait_for_selector("#filter-probability", state="attached")
    set_range(page, "#filter-probability", 0.95)
    page.wait_for_selector("#filtered-grid")
    shown_ids = set(page.evaluate("View.rowsOf(null).map((row) => S.map.id[row])"))
    probability = np.asarray(digits_run.assignments.membership_probability)
    assert shown_ids == set(ids[probability >= np.float32(0.95)].tolist())
    export_from_panel(page, "fiftyone", tmp_path / "fiftyone")
    data = json.loads((tmp_path / "fiftyone" / "data.json").read_text())
    assert {int(key) for key in data} == shown_ids
    assert errors == []


def test_export_refuses_places_that_make_no_sense(server, digits_run: imgcluster.Run, tmp_path: Path) -> None:
    import httpx

    def export(dest: str, **extra: object) -> httpx.Response:
        return httpx.post(f"{server.url}/api/export", json={"run": digits_run.key, "to": "csv", "dest": dest, **extra},
                          timeout=60)

    for dest, says in [("exports/cats.csv", "relative path"), ("/etc/imgcluster.csv", "Exports go under"),
                       (str(server.app.state.explorer.workspace / "x.csv"), "inside the workspace"),
                       (str(Path(digits_run.record.root) / "exported"), "inside the clustered folder"),
                       ("", "Give the folder")]:
        answer = export(dest)
        assert answer.status_code == 400 and says in answer.json()["detail"], (dest, answer.text)
    (tmp_path / "taken.csv").write_text("mine")
    answer = export(str(tmp_path / "taken.csv"))
    assert answer.status_code == 400 and "never overwrite" in answer.json()["detail"]
    assert (tmp_path / "taken.csv").read_text() == "mine"
    answer = export(str(tmp_path / "none.csv"), image_ids=[10**9])
    assert answer.status_code == 400 and "no image with id" in answer.json()["detail"]
    assert not (tmp_path / "none.csv").exists()


def runs_by_key(server) -> dict[str, dict]:
    import httpx

    return {r["key"]: r for r in httpx.get(f"{server.url}/api/runs", timeout=60).json()}


def test_split_gives_a_derived_run_and_undo_goes_back(console, server, digits_run: imgcluster.Run,
                                                      web_workspace: Path) -> None:
    page, errors = console
    clusters = np.asarray(digits_run.assignments.clusters)
    top = int(np.bincount(clusters[clusters >= 0]).argmax())
    open_app(page, server, digits_run.key)
    page.click(f"#clusters li[data-cluster='{top}']")
    page.fill("#split-k", "3")
    page.click("#split")
    wait_until_opened(page, not_key=digits_run.key)
    key = page.evaluate("S.run")
    made = runs_by_key(server)[key]
    assert made["parent"] == digits_run.key and made["edit"]["action"] == "split" and made["edit"]["k"] == 3
    split = imgcluster.load_run(key, workspace=web_workspace)
    after = np.asarray(split.assignments.clusters)
    assert np.array_equal(np.asarray(split.assignments.image_ids), np.asarray(digits_run.assignments.image_ids))
    assert np.array_equal(after[clusters != top], clusters[clusters != top])  # the rest stays
    parts = set(after[clusters == top].tolist())
    assert len(parts) == 3 and top in parts and not parts - {top} & set(clusters.tolist())
    assert split.record.n_clusters == digits_run.record.n_clusters + 2
    # The new parts are listed (the list is drawn after S.run changes: wait for it).
    page.wait_for_selector(f"#clusters li[data-cluster='{max(parts)}']", timeout=30_000)
    assert page.locator(f"#clusters li[data-cluster='{max(parts)}']").count() == 1
    page.click("#undo")
    wait_until_opened(page, key=digits_run.key)
    assert key in runs_by_key(server)  # undo goes back; the edit stays a run of its own
    assert errors == []


def test_merge_keeps_the_chosen_cluster_after_confirming(console, server, digits_run: imgcluster.Run,
                                                        web_workspace: Path) -> None:
    import httpx

    page, errors = console
    clusters = np.asarray(digits_run.assignments.clusters)
    sizes = np.bincount(clusters[clusters >= 0])
    big, small = (int(c) for c in np.argsort(-sizes)[:2])
    # A cluster someone named is what the merge keeps by default, even when ticked last and smaller.
    assert httpx.put(f"{server.url}/api/clusters/{small}/name?run={digits_run.key}", json={"name": "my sevens"},
                     timeout=60).status_code == 200
    open_app(page, server, digits_run.key)
    page.check(f"#clusters li[data-cluster='{big}'] input.pick")
    page.check(f"#clusters li[data-cluster='{small}'] input.pick")
    assert page.input_value("#merge-into") == str(small)
    page.click("#merge")
    assert "my sevens" in page.inner_text("#merge-confirm-text")
    page.click("#merge-cancel")  # nothing happens without confirming
    assert page.locator("#merge-confirm").is_hidden() and page.evaluate("S.run") == digits_run.key
    page.select_option("#merge-into", str(big))  # the user chooses which one stays
    page.select_option("#merge-into", str(small))
    page.click("#merge")
    page.click("#merge-go")
    wait_until_opened(page, not_key=digits_run.key)
    key = page.evaluate("S.run")
    assert runs_by_key(server)[key]["parent"] == digits_run.key
    merged = imgcluster.load_run(key, workspace=web_workspace)
    after = np.asarray(merged.assignments.clusters)
    assert set(after[np.isin(clusters, [big, small])].tolist()) == {small} and big not in after
    assert merged.names[small].name == "my sevens"
    assert page.inner_text("#panel-title") == "my sevens"
    page.click("#undo")
    wait_until_opened(page, key=digits_run.key)
    assert errors == []


def test_split_refuses_what_it_cannot_do(server, digits_run: imgcluster.Run) -> None:
    import httpx

    url = f"{server.url}/api/clusters/%d/split"
    clusters = np.asarray(digits_run.assignments.clusters)
    smallest = int(np.argmin(np.where(np.bincount(clusters[clusters >= 0]) > 0, np.bincount(clusters[clusters >= 0]),
                                      10**9)))
    size = int((clusters == smallest).sum())
    assert httpx.post(url % smallest, json={"run": digits_run.key, "k": 1}, timeout=60).status_code == 422
    answer = httpx.post(url % 999, json={"run": digits_run.key, "k": 2}, timeout=60)
    assert answer.status_code == 400 and "no cluster 999" in answer.json()["detail"]
    answer = httpx.post(url % -1, json={"run": digits_run.key, "k": 2}, timeout=60)
    assert answer.status_code == 400
    if size < 50:
        answer = httpx.post(url % smallest, json={"run": digits_run.key, "k": size + 1}, timeout=60)
        assert answer.status_code == 400 and "cannot be split" in answer.json()["detail"]


def test_arrow_keys_move_the_focus_through_a_grid_and_an_images_neighbours(console, server,
                                                                         digits_run: imgcluster.Run) -> None:
    page, errors = console
    clusters = np.asarray(digits_run.assignments.clusters)
    top = int(np.bincount(clusters[clusters >= 0]).argmax())
    open_app(page, server, digits_run.key)
    page.click(f"#clusters li[data-cluster='{top}']")
    page.wait_for_function("document.querySelectorAll('#cluster-grid figure').length >= 12")
    ids = page.eval_on_selector_all("#cluster-grid figure", "nodes => nodes.map((n) => n.dataset.id)")

    def focused() -> str | None:
        return page.evaluate("document.activeElement.dataset.id || null")

    columns = page.evaluate("""() => { const f = [...document.querySelectorAll('#cluster-grid figure')];
                                       return f.filter((n) => n.offsetTop === f[0].offsetTop).length; }""")
    assert 1 < columns < len(ids)
    page.keyboard.press("ArrowRight")  # nothing focused yet: the first image takes the focus
    assert focused() == ids[0]
    page.keyboard.press("ArrowRight")
    assert focused() == ids[1]
    page.keyboard.press("ArrowDown")
    assert focused() == ids[1 + columns]
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    assert focused() == ids[0]
    page.keyboard.press("Enter")  # opens the image; its nearest images take the keys
    page.wait_for_selector("#neighbours figure")
    page.wait_for_function(f"location.hash.includes('image={ids[0]}')")
    near = page.eval_on_selector_all("#neighbours figure", "nodes => nodes.map((n) => n.dataset.id)")
    assert focused() == near[0]
    page.keyboard.press("ArrowRight")
    assert focused() == near[1]
    page.keyboard.press("Enter")
    page.wait_for_function(f"location.hash.includes('image={near[1]}')")
    assert errors == []


def test_thumbnails_on_the_map_never_overlap(console, server, digits_run: imgcluster.Run) -> None:
    page, errors = console
    clusters = np.asarray(digits_run.assignments.clusters)
    top = int(np.bincount(clusters[clusters >= 0]).argmax())
    open_app(page, server, digits_run.key)
    page.click(f"#clusters li[data-cluster='{top}']")  # zooms to the cluster: its points become images
    page.wait_for_function(f"S.focus === {top}")
    next_frame = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    page.evaluate(next_frame)  # the overview's images (the whole map has fewer points than 4,000) are gone
    page.wait_for_function("Number(document.body.dataset.atlas) > 0")
    for _ in range(4):  # and as the map zooms out, fewer images, still apart
        thumbs = page.evaluate("imgclusterMap.thumbnails()")
        assert thumbs
        for i, a in enumerate(thumbs):
            for b in thumbs[i + 1:]:
                assert abs(a["x"] - b["x"]) >= a["side"] or abs(a["y"] - b["y"]) >= a["side"], (a, b)
        ids = {t["id"] for t in thumbs}
        assert ids <= set(np.asarray(digits_run.assignments.image_ids)[clusters == top].tolist())
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert not page.is_visible("#hint")  # the map's hint would sit on the images
        page.mouse.wheel(0, 400)
        page.evaluate(next_frame)
        if not page.get_attribute("body", "data-atlas"):
            assert page.is_visible("#hint")  # dots only: the hint says to zoom in
            break
    assert errors == []


def test_the_facets_follow_the_maps_order(server, digits_run: imgcluster.Run) -> None:
    import json
    import os

    import httpx

    body = httpx.get(f"{server.url}/api/runs/{digits_run.key}/facets", timeout=60).content
    points = httpx.get(f"{server.url}/api/runs/{digits_run.key}/map", timeout=60).content
    length = int(np.frombuffer(body[:4], "<u4")[0])
    head = json.loads(body[4:4 + length])
    n = head["n"]
    assert n == len(digits_run.images) and len(body) == 4 + length + 20 * n
    probability, days = (np.frombuffer(body, "<f4", n, 4 + length + 4 * n * k) for k in (0, 1))
    how, folder, video = (np.frombuffer(body, "<i4", n, 4 + length + 4 * n * k) for k in (2, 3, 4))
    assert head["videos"] == [""] and not video.any()  # no key-frames among the digits
    ids = np.frombuffer(points, "<i4", n, 12 * n)  # the map's order
    by_id = {r.id: r for r in digits_run.images}
    row = {int(i): k for k, i in enumerate(np.asarray(digits_run.assignments.image_ids))}
    expected = np.asarray(digits_run.assignments.membership_probability)[[row[int(i)] for i in ids]]
    assert np.allclose(probability, expected, atol=1e-6)
    assert [head["folders"][f] for f in folder] == [os.path.basename(os.path.dirname(by_id[int(i)].path)) for i in ids]
    assert set(head["how"]) <= {"fit", "filed", "attached", "duplicate"} and how.max() < len(head["how"])
    mtimes = np.asarray([by_id[int(i)].mtime_ns for i in ids]) / 86_400e9
    assert np.allclose(days, mtimes, atol=1e-3) and head["date"]["min"] <= days.min() + 1e-3


def test_a_lasso_splits_off_a_new_cluster_in_a_derived_run(console, server, digits_run: imgcluster.Run,
                                                           web_workspace: Path) -> None:
    from .conftest import select_box

    page, errors = console
    open_app(page, server, digits_run.key)
    select_box(page, 0.4, 0.6)
    selected = set(page.evaluate("Array.from(S.selection, (row) => S.map.id[row])"))
    page.click("#split-off")
    wait_until_opened(page, not_key=digits_run.key)
    key = page.evaluate("S.run")
    assert runs_by_key(server)[key]["parent"] == digits_run.key
    split = imgcluster.load_run(key, workspace=web_workspace)
    ids, after = np.asarray(split.assignments.image_ids), np.asarray(split.assignments.clusters)
    new = int(after.max())
    assert new > int(np.asarray(digits_run.assignments.clusters).max())
    assert set(ids[after == new].tolist()) == selected
    assert np.array_equal(after[~np.isin(ids, list(selected))],
                          np.asarray(digits_run.assignments.clusters)[~np.isin(ids, list(selected))])
    assert page.get_attribute("#cluster-grid", "data-cluster") == str(new)
    assert errors == []


def test_key_frames_carry_their_video_as_a_facet(tmp_path: Path) -> None:
    """A folder of photos and a video: the facets name each key-frame's video, still images none."""
    import json

    pytest.importorskip("av")
    from fastapi.testclient import TestClient

    from imgcluster.web.app import create_app

    from ..conftest import write_photos
    from ..test_video import write_video

    folder = tmp_path / "mixed"
    write_photos(folder / "photos", 8)
    (folder / "clips").mkdir()
    write_video(folder / "clips" / "trip.mkv", (2.0, 2.0))
    run = imgcluster.cluster(folder, model="efficientnet-lite0", k=2, namer="none", config=imgcluster.RunConfig(
        reduce=imgcluster.ReduceConfig(method="pca", map_method="pca")))
    with TestClient(create_app(run.workspace)) as client:
        body = client.get(f"/api/runs/{run.key}/facets").content
        points = client.get(f"/api/runs/{run.key}/map").content
    length = int(np.frombuffer(body[:4], "<u4")[0])
    head = json.loads(body[4:4 + length])
    n = head["n"]
    video = np.frombuffer(body, "<i4", n, 4 + length + 16 * n)
    ids = np.frombuffer(points, "<i4", n, 12 * n)
    frames = {r.id for r in run.images if r.source_path is not None}
    assert frames and head["videos"] == ["", "clips/trip.mkv"]
    assert [bool(v) for v in video] == [int(i) in frames for i in ids]
    assert sorted(head["folders"]) == ["clips", "photos"]
