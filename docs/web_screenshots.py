"""Take the web app's screenshots in the docs (docs/web-*.png) in headless Chromium.

    imgcluster demo /tmp/shots/digits
    imgcluster cluster /tmp/shots/digits/images --workspace /tmp/shots/ws --seed 0
    imgcluster cluster /tmp/shots/digits/images --workspace /tmp/shots/ws --seed 1
    PYTHONPATH=src python docs/web_screenshots.py /tmp/shots/ws docs [app labels atlas colour filtered compare]

The first run is shown (coloured, filtered, a cluster picked); the compare view compares the second
with the first. The page is 1280 x 800; each shot opens a fresh page, so no camera or filter is left
over from the one before. Look at every image before committing it: the names and the map depend on
the model and on the seeds.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SHOTS = ("app", "labels", "atlas", "colour", "filtered", "compare")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def serve(workspace: Path) -> tuple[subprocess.Popen, str]:
    """`imgcluster serve` on a free port; returns the process and its address once it answers."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "imgcluster.cli", "serve", "--workspace", str(workspace),
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/runs", timeout=30).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    sys.exit("error: the server did not start: run `imgcluster serve --workspace WS` to see why")


def settle(page) -> None:
    """Wait for the map's first frame, the requests after it and the sprite sheets' redraw."""
    page.wait_for_selector("body[data-map-ready]", timeout=120_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(800)


def shoot(browser, url: str, first: str, second: str, out: Path, which: set[str]) -> list[str]:
    """Take the shots named in ``which``; returns the console errors the pages logged."""
    errors: list[str] = []

    def open_page(address: str):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(address)
        settle(page)
        return page

    if "labels" in which:  # the whole map, labelled, images where points are few
        page = open_page(f"{url}/#run={first}")
        page.screenshot(path=str(out / "web-map-labels.png"))
        page.close()
    if "atlas" in which:  # the map alone, zoomed in on the biggest cluster's label: images apart
        page = open_page(f"{url}/#run={first}")
        x0, y0, x1, y1 = page.evaluate("window.imgclusterMap.labels()[0].box")
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)
        for _ in range(3):
            page.mouse.wheel(0, -240)
            page.wait_for_timeout(200)
        page.mouse.move(0, 0)  # no tooltip
        settle(page)
        page.locator("#mapwrap").screenshot(path=str(out / "web-atlas.png"))
        page.close()
    if "app" in which:  # the biggest cluster picked: the map zooms to it, the panel shows its grid
        page = open_page(f"{url}/#run={first}")
        top = page.get_attribute("#clusters li.cluster >> nth=0", "data-cluster")
        page.click(f"#clusters li[data-cluster='{top}']")
        page.wait_for_selector("#panel-body img")
        settle(page)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "web-app.png"))
        page.close()
    if "colour" in which:
        page = open_page(f"{url}/#run={first}&colour=folder")
        page.wait_for_selector("#legend")
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "web-colour-by.png"))
        page.close()
    if "filtered" in which:  # nothing picked: the grid is the filtered view
        page = open_page(f"{url}/#run={first}&colour=folder&minp=0.8&folder=0|4|9")
        page.wait_for_selector("#panel-body img")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "web-filtered-grid.png"))
        page.close()
    if "compare" in which:
        page = open_page(f"{url}/#run={second}")
        page.select_option("#compare", first)
        page.wait_for_selector("#compare-matching td")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "web-compare.png"))
        page.close()
    return errors


def main() -> None:
    if len(sys.argv) < 3 or not set(sys.argv[3:]) <= set(SHOTS):
        sys.exit(f"usage: web_screenshots.py WORKSPACE OUTDIR [{' '.join(SHOTS)}]")
    import httpx
    from playwright.sync_api import sync_playwright

    workspace, out = Path(sys.argv[1]), Path(sys.argv[2])
    which = set(sys.argv[3:]) or set(SHOTS)
    process, url = serve(workspace)
    try:
        runs = sorted(httpx.get(url + "/api/runs", timeout=60).json(), key=lambda r: r["created_at"])
        if len(runs) < 2:
            sys.exit("error: the workspace needs two runs (cluster twice with different --seed)")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            errors = shoot(browser, url, runs[0]["key"], runs[1]["key"], out, which)
            browser.close()
    finally:
        process.terminate()
        process.wait(60)
    for name in sorted(out.glob("web-*.png")):
        print(f"{name}: {name.stat().st_size / 1024:.0f} KB")
    if errors:
        sys.exit("console errors: " + "; ".join(errors))


if __name__ == "__main__":
    main()
