"""A running web app on 127.0.0.1 over a copy of the digits run's workspace (edits must not leak into
the session's shared ``digits_run``), and Debian's Chromium to drive it."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def select_box(page, start: float, end: float) -> None:
    """Drag the box tool over the map from ``start`` to ``end`` (fractions of its width and height),
    and wait for the selection's grid."""
    page.click("#tools [data-mode='box']")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + start * box["width"], box["y"] + start * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + end * box["width"], box["y"] + end * box["height"], steps=8)
    page.mouse.up()
    page.wait_for_selector("#selection-grid figure")


def copy_workspace(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("lock"))
    return dest


class LiveServer:
    """uvicorn in a thread, on a free port picked by the OS (the socket is handed over, so no race)."""

    def __init__(self, workspace: Path, **options: object):
        import uvicorn

        from imgcluster.web import create_app

        self.app = create_app(workspace, **options)  # type: ignore[arg-type]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def web_workspace(digits_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workspace(Path(digits_run.workspace), tmp_path_factory.mktemp("web") / "workspace")


@pytest.fixture(scope="module")
def server(web_workspace: Path) -> Iterator[LiveServer]:
    with LiveServer(web_workspace) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI for the web app test (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def unseen_digits(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Digit scans the digits run never saw (indexes 600-699), one path per label."""
    import csv

    import imgcluster

    root = tmp_path_factory.mktemp("unseen")
    imgcluster.write_digits(root, limit=700)
    found: dict[int, Path] = {}
    with open(root / "labels.csv") as handle:
        for row in csv.DictReader(handle):
            index = int(Path(row["path"]).stem.split("-")[1])
            if index >= 600:
                found.setdefault(int(row["label"]), root / "images" / row["path"])
    return found


@pytest.fixture
def console(browser, server) -> Iterator[tuple[object, list[str]]]:
    """A page that may reach only the app (and file:// reports), with every console error and
    failed or 4xx/5xx request collected."""
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on("console", lambda message: errors.append(f"console: {message.text}") if message.type == "error" else None)
    # ERR_ABORTED: the page dropped a request itself (a grid replaced before its thumbnails came).
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url} {request.failure}")
            if request.failure != "net::ERR_ABORTED" else None)
    page.on("response", lambda response: errors.append(f"{response.status}: {response.url}")
            if response.status >= 400 else None)
    page.route("**/*", lambda route: route.continue_()
               if route.request.url.startswith((server.url, "file:")) else route.abort())
    yield page, errors
    page.close()


def open_app(page, server, run: str | None = None) -> None:
    """The app on ``run`` (by its link), else on the newest run."""
    page.goto(server.url + "/" + (f"#run={run}" if run else ""))
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.wait_for_selector("body[data-points]", timeout=30_000)


def wait_until_opened(page, *, not_key: str | None = None, key: str | None = None) -> str:
    """Wait until the app has finished opening a run (its list, map, tree and view drawn): ``key``, or
    any run but ``not_key``; returns the run's key. S.run changes at the start of opening, so waiting
    on it alone races the rest of the opening."""
    if key is not None:
        page.wait_for_function(f"document.body.dataset.opened === {key!r}", timeout=60_000)
        return key
    page.wait_for_function(f"document.body.dataset.opened && document.body.dataset.opened !== {not_key!r} "
                           "&& document.body.dataset.opened === S.run", timeout=60_000)
    return page.evaluate("S.run")


@pytest.fixture
def page(browser, server):
    """The app's first page, its map drawn; fails the test on any page error (nothing but the app is
    fetched: no CDN)."""
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
               else route.abort())  # everything comes from the app itself: no CDN
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.wait_for_selector("body[data-points]", timeout=30_000)  # the map's first frame comes after ready
    yield page
    assert errors == []
    page.close()
