"""How fast is the web app on big runs: time to the map's first frame in Chromium with 100k and 1M
points, and p50/p95 latency of /api/clusters/{id}/images and /api/predict.

A synthetic workspace per size, written through the store directly (no embedding): n catalogued
images, 50 Gaussian clusters on the 2-D map plus 5% unclustered, a thumbnail for the first 2,000
images, the clusters' colours stored with the run as a saved run stores them (a workspace kept by
an older version of this script has none: the server then chooses them from the map on demand).
The server is `imgcluster serve` in a child process; the browser is Debian's Chromium (WebGL on
SwiftShader, i.e. on the CPU: a real GPU draws faster).
- first render: from navigation start to the first frame with every point drawn (the page reads a
  pixel back to be sure), measured by the page itself; "first view" is a fresh server on a run never
  viewed, "server restarted" a second fresh server (older versions, timed by PYTHONPATH, cached a
  viewed run's arrays in the workspace's cache/web-runs: it is removed before the first view, and
  only they read it after a restart), "warm" a second browser context (no HTTP cache) on the same server.
- redraw: the mean time of one redraw of the map (a pan or zoom step), waited for: with every
  point, and while moving, when the page draws a random subset sized from its first frame's cost.
  Each redraw includes the overlay: the cluster labels (on, as the page opens) and, zoomed in, images.
- zoomed in: the wheel zooms on the biggest cluster's label until at most 4,000 points are in view
  (where the page starts showing points as their images), the sprite sheets load, then the same
  redraws are timed there; the images and labels drawn are counted. The zoom and the count of points
  in view are worked out by this script, so an older page (`--map-only` with PYTHONPATH at an older
  checkout) is timed at the same place.
- /api/clusters/{id}/images: 300 requests, random cluster and offset, 60 images each, one at a time.
- /api/predict: 30 uploads of 96x72 noise JPEGs (embedded by efficientnet-lite0 on the CPU, then searched
  in the run's predictor, fitted on synthetic 1280-d vectors) into the smallest run only: a
  1M x 1280-d predictor would need 10 GB.

    python bench/web.py [--sizes 100000 1000000] [--keep DIR] [--map-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from imgcluster.cluster.predictor import Predictor
from imgcluster.config import RunConfig
from imgcluster.embed import load_model
from imgcluster.palette import map_colours
from imgcluster.run.metrics import summarise_clusters
from imgcluster.store import Assignments, RunRecord, ScannedFile, Workspace

CLUSTERS, NOISE_SHARE, THUMBNAILS, DIM = 50, 0.05, 2000, 1280
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def build(folder: Path, n: int, with_predictor: bool, seed: int = 0) -> float:
    """Write a synthetic workspace with one run of n images; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    model = load_model("efficientnet-lite0")
    ws = Workspace.open(folder)
    try:
        ws.save_scanned([ScannedFile(f"/synthetic/{i:07d}.jpg", 4000, 0, f"{i:032x}", "JPEG", 96, 72, "ok")
                         for i in range(n)])
        ids = np.asarray(sorted(r.id for r in ws.images(status="ok")), dtype=np.int64)
        ws.save_batch(model.model_id, [], np.zeros((0, DIM), np.float32),
                      thumbnails={f"{i:032x}": (_jpeg(rng), 96, 72) for i in range(min(n, THUMBNAILS))})
        labels = rng.integers(0, CLUSTERS, n)
        labels[rng.random(n) < NOISE_SHARE] = -1
        centres = rng.uniform(-20, 20, (CLUSTERS, 2))
        xy = np.where(labels[:, None] >= 0, centres[np.maximum(labels, 0)] + rng.normal(0, 1.2, (n, 2)),
                      rng.uniform(-24, 24, (n, 2)))
        probabilities = np.where(labels >= 0, rng.uniform(0.5, 1.0, n), 0.0)
        summaries = summarise_clusters(ids, labels, probabilities, xy)
        key = f"synthetic-{n}"
        record = RunRecord.from_info(
            key, time.time(), "/synthetic", model.model_id, "efficientnet-lite0", n, CLUSTERS, RunConfig().to_dict(),
            {"model": model.describe(), "clusters": [s.__dict__ for s in summaries],
             "metrics": {"n_clusters": CLUSTERS, "noise_fraction": NOISE_SHARE}})
        # Stored as run/save.py stores them; an older imgcluster ignores them and chooses its own.
        record = dataclasses.replace(record, colours=map_colours(xy[:, 0], xy[:, 1], labels))
        if with_predictor:
            directions = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
            vectors = directions[np.maximum(labels, 0)] + rng.standard_normal((n, DIM), dtype=np.float32) * 0.7
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            ws.write_predictor(key, *Predictor().fit(vectors, labels, probabilities, xy, ids).state())
            del vectors
        ws.save_run(record, Assignments(ids, labels, probabilities, xy[:, 0], xy[:, 1]))
    finally:
        ws.close()
    return time.perf_counter() - started


def _jpeg(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


class Server:
    """`imgcluster serve` in a child process, on a free port."""

    def __init__(self, workspace: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "imgcluster.cli", "serve", "--workspace", str(workspace), "--port",
                   str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/api/runs", timeout=60).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"server did not start: {self.process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        try:  # uvicorn lets requests in flight finish: a million-point run's facets take seconds under load
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(20)


ZOOMED_IN_VIEW = 4000  # the page shows images from this many points in view (app.js ATLAS_MAX)
IN_VIEW = """() => {  // points inside the canvas, counted here so that any version of the page can be asked
  const map = S.map, canvas = document.querySelector('#map');
  const w = canvas.clientWidth, h = canvas.clientHeight, toScreen = window.imgclusterMap.toScreen;
  let count = 0;
  for (let i = 0; i < map.n; i++) {
    const [sx, sy] = toScreen(map.x[i], map.y[i]);
    if (sx >= 0 && sy >= 0 && sx <= w && sy <= h) count++;
  }
  return count;
}"""


def first_render(browser, url: str, zoom: bool = False) -> tuple:
    """Milliseconds from navigation start to the map's first full frame, the points drawn, and the
    mean milliseconds of a redraw afterwards: every point, and while the map moves (level of detail).
    With ``zoom``, also zoomed in until images show: (points in view, images, labels, redraw ms)."""
    context = browser.new_context(viewport={"width": 1400, "height": 860})  # no HTTP cache carried over
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("body[data-map-ready]", timeout=600_000)
    ready, points = float(page.get_attribute("body", "data-map-ready")), int(page.get_attribute("body", "data-points"))
    full = float(page.evaluate("window.imgclusterMap.timeRedraws(10)"))
    moving = float(page.evaluate("window.imgclusterMap.timeRedraws(10, true)"))
    zoomed = zoomed_in(page) if zoom else None
    context.close()
    return ready, points, full, moving, zoomed


def zoomed_in(page) -> tuple[int, int, int, float]:
    """Wheel in on the biggest cluster's label until images show; then points in view, images drawn,
    labels drawn and the mean milliseconds of a full redraw (points, labels, images) there."""
    page.wait_for_function("window.imgclusterMap.labels().length > 0", timeout=120_000)
    x0, y0, x1, y1 = page.evaluate("window.imgclusterMap.labels()[0].box")
    canvas = page.locator("#map").bounding_box()
    page.mouse.move(canvas["x"] + (x0 + x1) / 2, canvas["y"] + (y0 + y1) / 2)
    for _ in range(60):
        if page.evaluate(IN_VIEW) <= ZOOMED_IN_VIEW:
            break
        page.mouse.wheel(0, -240)
        page.wait_for_timeout(60)
    page.wait_for_timeout(300)
    page.wait_for_load_state("networkidle")  # the sprite sheets of the images in view
    page.evaluate("window.imgclusterMap.timeRedraws(2)")  # draws the loaded images once
    in_view = int(page.evaluate(IN_VIEW))
    redraw = float(page.evaluate("window.imgclusterMap.timeRedraws(10)"))
    images = int(page.get_attribute("body", "data-atlas") or 0)
    labels = int(page.get_attribute("body", "data-labels") or 0)
    return in_view, images, labels, redraw


def latencies(call, count: int) -> tuple[float, float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        times.append(1000 * (time.perf_counter() - started))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", type=Path, help="Build the workspaces here and keep them.")
    parser.add_argument("--map-only", action="store_true",
                        help="Time the map only (first frames, redraws, zoomed in), not the API calls.")
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    import httpx
    from playwright.sync_api import sync_playwright

    root = args.keep or Path(tempfile.mkdtemp(prefix="imgcluster-bench-web-"))
    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        for n in sorted(args.sizes):
            folder = root / f"ws-{n}"
            predictor = n == min(args.sizes)
            built = build(folder, n, predictor) if not (folder / "catalogue.db").exists() else 0.0
            shutil.rmtree(folder / "cache" / "web-runs", ignore_errors=True)  # older versions' cache: never viewed
            server = Server(folder)
            try:
                cold = first_render(browser, server.url)
            finally:
                server.close()
            server = Server(folder)
            try:
                restart = first_render(browser, server.url)
                warm = first_render(browser, server.url, zoom=True)
                if args.map_only:
                    rows.append((n, built, cold, restart, warm, None, None))
                    print(f"n={n:,}: " + _map_line(cold, restart, warm), flush=True)
                    continue
                rng = np.random.default_rng(1)
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    sizes = {c["cluster"]: c["size"] for c in client.get("/api/clusters").json()["clusters"]}
                    clusters = [c for c in sizes if c >= 0]
                    for cluster in clusters:  # each cluster's member order is computed once, then kept
                        client.get(f"/api/clusters/{cluster}/images", params={"limit": 1}).raise_for_status()

                    def page(i: int, clusters: list[int] = clusters, sizes: dict[int, int] = sizes,
                             rng: np.random.Generator = rng) -> None:
                        cluster = clusters[i % len(clusters)]
                        offset = int(rng.integers(0, max(1, sizes[cluster] - 60)))
                        client.get(f"/api/clusters/{cluster}/images",
                                   params={"offset": offset, "limit": 60}).raise_for_status()

                    grid = latencies(page, 300)
                    filed = None
                    if predictor:
                        uploads = [_jpeg(np.random.default_rng(100 + seed)) for seed in range(31)]
                        client.post("/api/predict", files={"file": ("warm.jpg", uploads[30], "image/jpeg")}
                                    ).raise_for_status()  # the model loads on the first upload

                        def upload(i: int, uploads: list[bytes] = uploads) -> None:
                            client.post("/api/predict", files={"file": (f"{i}.jpg", uploads[i], "image/jpeg")}
                                        ).raise_for_status()

                        filed = latencies(upload, 30)
            finally:
                server.close()
            rows.append((n, built, cold, restart, warm, grid, filed))
            print(f"n={n:,}: " + (f"built in {built:.0f} s" if built else "workspace reused") +
                  "; " + _map_line(cold, restart, warm) + f"; /api/clusters/{{id}}/images p50 {grid[0]:.1f} ms "
                  f"p95 {grid[1]:.1f} ms" + (f"; /api/predict p50 {filed[0]:.0f} ms p95 {filed[1]:.0f} ms"
                                              if filed else ""), flush=True)
        browser.close()
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("| images | first render: first view / server restarted / warm | redraw: all / moving | "
          "zoomed in: redraw (points in view, images, labels) | cluster images p50 / p95 | predict p50 / p95 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, _, cold, restart, warm, grid, filed in rows:
        in_view, images, labels, redraw = warm[4]
        print(f"| {n:,} | {cold[0] / 1000:.2f} / {restart[0] / 1000:.2f} / {warm[0] / 1000:.2f} s | "
              f"{warm[2]:.0f} / {warm[3]:.0f} ms | {redraw:.0f} ms ({in_view:,}, {images}, {labels}) | "
              + (f"{grid[0]:.1f} / {grid[1]:.1f} ms | " if grid else "— | ")
              + (f"{filed[0]:.0f} / {filed[1]:.0f} ms |" if filed else "— |"))
    print(f"\n{os.cpu_count()} CPUs; Chromium WebGL on SwiftShader (CPU)")
    print("command: python " + " ".join(sys.argv))
    import imgcluster

    print(f"imgcluster from {Path(imgcluster.__file__).parent}; load average {os.getloadavg()[0]:.1f}")


def _map_line(cold: tuple, restart: tuple, warm: tuple) -> str:
    """The map's figures of one size as a line of text."""
    in_view, images, labels, redraw = warm[4]
    return (f"first render: first view {cold[0] / 1000:.2f} s, server restarted {restart[0] / 1000:.2f} s, "
            f"warm {warm[0] / 1000:.2f} s ({cold[1]:,} points); redraw {warm[2]:.0f} ms, while moving "
            f"{warm[3]:.0f} ms; zoomed in ({in_view:,} points in view, {images} images, {labels} labels) "
            f"redraw {redraw:.0f} ms; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
