"""`imgcluster serve` as a process: it stops promptly on SIGTERM, even while it builds a run's facets
(4-6 s at 1M images, here made to take minutes)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import imgcluster
from imgcluster.web.app import GRACE_S

pytest.importorskip("uvicorn")

# The server's own CLI, with the facets build replaced by one that says it started and then blocks.
SLOW_FACETS = """
import sys, time
import imgcluster.web.routers.facets as facets

def slow(*args, **kwargs):
    print("building facets", flush=True)
    time.sleep(600)
    return b""

facets.facet_bytes = slow
from imgcluster.cli import main
main(sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_exits_promptly_on_sigterm_while_a_runs_facets_are_built(web_workspace: Path,
                                                                       digits_run: imgcluster.Run) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SLOW_FACETS, "serve", "--workspace", str(web_workspace),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/api/runs", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.stdout else ""
            time.sleep(0.2)
        def open_the_run() -> None:  # as a page does: its facets request waits for the build
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{url}/api/runs/{digits_run.key}/facets", timeout=120)

        threading.Thread(target=open_the_run, daemon=True).start()
        assert server.stdout is not None
        building = threading.Event()

        def watch(stdout) -> None:  # on a thread: a server that never says it builds must not hang the test
            for line in stdout:
                if "building facets" in line:
                    building.set()

        threading.Thread(target=watch, args=(server.stdout,), daemon=True).start()
        assert building.wait(timeout=90), "the server never started building the run's facets"
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=GRACE_S + 30)
        assert time.monotonic() - started < GRACE_S + 5  # was: until the build ended
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
