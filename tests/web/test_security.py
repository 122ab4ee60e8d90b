"""Hostile or careless requests: a token when the app listens beyond this machine, the Host header
when it does not, oversized and non-image uploads, links that lead out of the scanned folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import imgcluster
from imgcluster.web import create_app

from ..conftest import jpeg_bytes, photo, write_photos
from .conftest import LiveServer

TOKEN = "a-test-token-0123456789"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> imgcluster.Run:
    folder = tmp_path_factory.mktemp("secure") / "photos"
    write_photos(folder, 12)
    fast = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(method="pca", map_method="pca"))
    return imgcluster.cluster(folder, model="efficientnet-lite0", method="kmeans", k=2, namer="none", config=fast)


def test_with_a_token_every_request_needs_it_and_the_page_works_from_its_link(small_run: imgcluster.Run) -> None:
    image_id = int(small_run.assignments.image_ids[0])
    with TestClient(create_app(small_run.workspace, token=TOKEN)) as client:
        for url in ("/api/runs", f"/api/images/{image_id}/file", f"/api/images/{image_id}/thumbnail", "/",
                    "/api/openapi.json"):
            refused = client.get(url)
            assert refused.status_code == 401 and "needs its token" in refused.json()["detail"], url
        assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/runs", params={"token": "wrong"}).status_code == 401
        assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200

        page = client.get("/", params={"token": TOKEN})  # the link `imgcluster serve` prints
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
        # The page's own requests carry the cookie: scripts, the API, thumbnails and files.
        for url in ("/static/app.js", "/api/runs", f"/api/images/{image_id}/thumbnail", f"/api/images/{image_id}/file"):
            assert client.get(url).status_code == 200, url


def test_without_a_token_only_requests_addressed_to_this_machine_are_answered(small_run: imgcluster.Run) -> None:
    with TestClient(create_app(small_run.workspace, local_only=True)) as client:
        assert client.get("/api/runs", headers={"Host": "127.0.0.1:8000"}).status_code == 200
        assert client.get("/api/runs", headers={"Host": "localhost:8000"}).status_code == 200
        rebound = client.get("/api/runs", headers={"Host": "attacker.example:8000"})
        assert rebound.status_code == 421 and "--host" in rebound.json()["detail"]


def test_serve_elsewhere_warns_and_requires_a_token(small_run: imgcluster.Run, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    import imgcluster.web.app as web_app
    from imgcluster.cli import app

    started: list[dict[str, object]] = []
    monkeypatch.setattr(web_app, "serve", lambda **options: started.append(options))
    monkeypatch.setattr(web_app, "check_address", lambda host, port: None)  # port 8000 may be taken here
    result = CliRunner().invoke(app, ["serve", "--workspace", str(small_run.workspace), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    token = started[0]["token"]
    assert isinstance(token, str) and len(token) >= 24
    assert "warning" in result.output and f"?token={token}" in result.output

    local = CliRunner().invoke(app, ["serve", "--workspace", str(small_run.workspace)])
    assert started[1]["token"] is None and "warning" not in local.output and "127.0.0.1" in local.output
    monkeypatch.undo()
    with pytest.raises(imgcluster.ConfigError, match="give a token"):
        web_app.serve(workspace=small_run.workspace, host="0.0.0.0")


def test_uploads_are_size_limited_and_checked_by_content(small_run: imgcluster.Run, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the upload may be spooled, and nowhere else
    before = _files(small_run)
    noise = os.urandom(3 * 2**20)
    with LiveServer(Path(small_run.workspace), max_upload_mb=2) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        too_big = client.post("/api/predict", files={"file": ("big.jpg", noise, "image/jpeg")})
        assert too_big.status_code == 413 and "2 MB" in too_big.json()["detail"]
        # Without a Content-Length (chunked), the body is cut off as it streams in.
        body = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n" + noise + b"\r\n--x--\r\n")
        chunked = client.post("/api/predict", content=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                              headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 413

        for name, data, kind in (("page.jpg", b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
                                 ("doc.png", b"%PDF-1.7\n" + os.urandom(2000), "a PDF"),
                                 ("notes.jpg", b"just some words\n" * 50, "text"),
                                 ("blob.webp", os.urandom(5000), "binary data")):
            refused = client.post("/api/predict", files={"file": (name, data, "image/jpeg")})
            assert refused.status_code == 415, name
            assert f"{name} is not an image: the content is {kind}" in refused.json()["detail"]

        # What the scan skips is not filed through an upload either: one set of checks for both.
        import io

        from PIL import Image
        for name, image, fmt, words in (("dot.png", Image.new("RGB", (1, 1), "red"), "PNG", "too small: 1×1 px"),
                                        ("icon.ico", photo(5, (64, 64)), "ICO", "unsupported image format ICO")):
            buffer = io.BytesIO()
            image.save(buffer, fmt)
            skipped = client.post("/api/predict", files={"file": (name, buffer.getvalue(), "image/png")})
            assert skipped.status_code == 200 and skipped.json()["status"] == "skipped", name
            assert words in skipped.json()["reason"], skipped.json()

        filed = client.post("/api/predict", files={"file": ("new.jpg", jpeg_bytes(photo(99)), "image/jpeg")})
        assert filed.status_code == 200 and filed.json()["status"] in ("assigned", "unassigned")
    assert _files(small_run) == before  # nothing written beside the images or in the workspace
    assert list(tmp_path.iterdir()) == []  # and the temporary copies are gone


def _files(run: imgcluster.Run) -> dict[Path, int]:
    """Every file under the images' folder (the workspace included) and when it last changed;
    SQLite's shared-memory files change on reads and are left out."""
    return {p: p.stat().st_mtime_ns for p in Path(run.record.root).rglob("*")
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


def test_a_file_that_now_leads_outside_the_scanned_folder_is_not_served(small_run: imgcluster.Run,
                                                                        tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes(photo(7)))
    first, second = small_run.images[0], small_run.images[1]
    original = Path(first.path).read_bytes()
    with TestClient(create_app(small_run.workspace)) as client:
        assert client.get(f"/api/images/{first.id}/file").content == original
        os.replace(first.path, first.path + ".moved")
        try:
            os.symlink(secret, first.path)
            outside = client.get(f"/api/images/{first.id}/file")
            assert outside.status_code == 404 and "outside the folder that was scanned" in outside.json()["detail"]
            assert secret.read_bytes() not in outside.content
            os.unlink(first.path)
            os.symlink(first.path + ".moved", first.path)  # a link within the scanned folder to the same picture
            assert client.get(f"/api/images/{first.id}/file").content == original
            os.unlink(first.path)
            os.symlink(second.path, first.path)  # inside, but another picture than the one catalogued
            other = client.get(f"/api/images/{first.id}/file")
            assert other.status_code == 404 and "no longer the image that was scanned" in other.json()["detail"]
        finally:
            if os.path.islink(first.path):
                os.unlink(first.path)
            os.replace(first.path + ".moved", first.path)


def test_only_the_catalogued_bytes_are_served_whatever_the_path_now_holds(small_run: imgcluster.Run,
                                                                          tmp_path: Path) -> None:
    """A hard link passes every path check, and a FIFO would hang a plain open: the bytes sent are
    checked against the catalogue (size and content hash) after the one open."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 40)
    first = small_run.images[2]
    with TestClient(create_app(small_run.workspace)) as client:
        os.replace(first.path, first.path + ".moved")
        try:
            os.link(secret, first.path)
            linked = client.get(f"/api/images/{first.id}/file")
            assert linked.status_code == 404 and b"root:x" not in linked.content
            os.unlink(first.path)
            os.mkfifo(first.path)
            fifo = client.get(f"/api/images/{first.id}/file")  # answers at once; never opens for a writer
            assert fifo.status_code == 404
        finally:
            if os.path.lexists(first.path):
                os.unlink(first.path)
            os.replace(first.path + ".moved", first.path)


def test_a_link_swapped_in_and_out_during_requests_never_leaks(small_run: imgcluster.Run, tmp_path: Path) -> None:
    """The check-then-open race: a thread swaps the file for a link to a secret and back while the
    server answers; no answer may hold the secret, and none may be a server error."""
    import threading

    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 40)
    first = small_run.images[3]
    original = Path(first.path).read_bytes()
    kept = tmp_path / "original.jpg"
    kept.write_bytes(original)
    stop = threading.Event()

    def swap() -> None:
        link = first.path + ".link"
        while not stop.is_set():
            for target in (secret, kept):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
                os.symlink(target, link)
                os.replace(link, first.path)  # atomic: the path is always one of the two links

    statuses: list[int] = []
    with TestClient(create_app(small_run.workspace)) as client:
        swapper = threading.Thread(target=swap)
        swapper.start()
        try:
            for _ in range(300):
                answer = client.get(f"/api/images/{first.id}/file")
                statuses.append(answer.status_code)
                assert b"root:x" not in answer.content
                assert answer.status_code in (200, 404) and (answer.status_code != 200 or answer.content == original)
        finally:
            stop.set()
            swapper.join()
            os.unlink(first.path)
            Path(first.path).write_bytes(original)
    assert len(statuses) == 300


@pytest.mark.parametrize("body", ['{"clusters": [1e400, 2]}', '{"clusters": [NaN, 2]}', '{"clusters": [Infinity, 2]}',
                                  '{"clusters": [1, 2], "run": "\\ud800"}'])
def test_non_finite_numbers_and_lone_surrogates_get_422_not_500(small_run: imgcluster.Run, body: str) -> None:
    with TestClient(create_app(small_run.workspace), raise_server_exceptions=False) as client:
        for method, url, payload in (("POST", "/api/clusters/merge", body),
                                     ("POST", "/api/clusters/0/images", body.replace("clusters", "image_ids")),
                                     ("POST", "/api/clusters/proposals", body.replace("clusters", "accept")),
                                     ("POST", "/api/export", body.replace("clusters", "image_ids")),
                                     ("PUT", "/api/clusters/0/name", body.replace('"clusters": [1, 2], "run"', '"name"')
                                      .replace('"clusters"', '"name"'))):
            answer = client.request(method, url, content=payload, headers={"content-type": "application/json"})
            assert answer.status_code == 422, (url, payload, answer.text)
            problems = answer.json()["detail"]
            assert problems and all({"loc", "msg"} <= set(p) for p in problems)
            assert "input" not in answer.text  # the hostile value is not echoed back


def test_a_connection_that_never_finishes_its_headers_is_closed(small_run: imgcluster.Run,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn alone waits forever for a request's headers: a few such sockets would hold the server."""
    import socket
    import threading
    import time

    import uvicorn

    from imgcluster.web import security

    monkeypatch.setattr(security, "HEADER_SECONDS", 1.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(small_run.workspace), log_level="warning",
                                           http=security.header_deadline_protocol()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            started = time.monotonic()
            assert slow.recv(100) == b""  # closed by the server, not by our timeout
            assert time.monotonic() - started < 8
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:  # a normal client is served
            assert client.get("/api/runs").status_code == 200
            time.sleep(1.5)  # past the deadline while idle between requests: the keep-alive rule applies
            assert client.get("/api/runs").status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
