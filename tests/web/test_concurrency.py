"""Two writers never share a workspace: every writing command (and a web edit) says the workspace
is busy; readers, the web app among them, keep answering while another process writes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import imgcluster
from imgcluster.cli import app

from .conftest import LiveServer

# Stands in for `imgcluster cluster` saving a large run: the workspace lock and one open write
# transaction (save_run of a million-image run holds one for seconds).
HOLD_A_WRITE = """
import sqlite3, sys, time
from imgcluster.store import Workspace
ws = Workspace.open(sys.argv[1]); ws.lock()
db = sqlite3.connect(f"{sys.argv[1]}/catalogue.db", isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('writing', 'yes')")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


@pytest.fixture
def writer(web_workspace: Path) -> Iterator[subprocess.Popen]:  # type: ignore[type-arg]
    process = subprocess.Popen([sys.executable, "-c", HOLD_A_WRITE, str(web_workspace), "8"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "holding"
    yield process
    process.kill()
    process.wait()


def test_the_server_answers_while_another_process_writes(web_workspace: Path, digits_run: imgcluster.Run,
                                                          writer: subprocess.Popen) -> None:  # type: ignore[type-arg]
    image_id = int(digits_run.assignments.image_ids[0])
    cluster = int(digits_run.assignments.clusters[0])
    with LiveServer(web_workspace) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for method, url, expected in [
                ("GET", "/api/runs", 200), ("GET", f"/api/runs/{digits_run.key}", 200), ("GET", "/api/clusters", 200),
                ("GET", f"/api/clusters/{cluster}/images", 200), ("GET", f"/api/images/{image_id}", 200),
                ("GET", f"/api/images/{image_id}/thumbnail", 200), ("GET", f"/api/runs/{digits_run.key}/map", 200),
                ("PUT", f"/api/clusters/{cluster}/name", 409)]:
            started = time.monotonic()
            response = client.request(method, url, json={"name": "mine"} if method == "PUT" else None)
            seconds = time.monotonic() - started
            assert response.status_code == expected, (url, response.text)
            assert seconds < 2.0, f"{method} {url} took {seconds:.1f} s while another process was writing"
        busy = client.put(f"/api/clusters/{cluster}/name", json={"name": "mine"}).json()["detail"]
        assert "being written by imgcluster pid" in busy and "Wait for it to finish" in busy
    assert writer.poll() is None, "the writer finished early: the requests did not overlap its write"


@pytest.mark.parametrize("command", [
    ["cluster", "{images}", "--model", "efficientnet-lite0"],
    ["embed", "{images}", "--model", "efficientnet-lite0"],
    ["update", "{images}"],
    ["name", "0", "mine"],
    ["runs", "rm", "{run}", "--yes"],
])
def test_every_writing_command_says_the_workspace_is_busy(command: list[str], web_workspace: Path,
                                                          digits_run: imgcluster.Run, digits_dir: Path) -> None:
    holder = imgcluster.open_workspace(workspace=web_workspace)
    holder.lock()
    try:
        args = [a.format(images=digits_dir / "images", run=digits_run.key) for a in command]
        result = CliRunner().invoke(app, [*args, "--workspace", str(web_workspace)])
    finally:
        holder.close()
    assert isinstance(result.exception, imgcluster.WorkspaceBusy), result.output
    assert "Wait for it to finish" in str(result.exception)
    assert [r.key for r in imgcluster.list_runs(workspace=web_workspace)][-1] == digits_run.key  # nothing deleted
