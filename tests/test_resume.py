"""A run killed half-way keeps what it embedded and resumes with only the rest."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import imgcluster

from .conftest import write_photos

N_PHOTOS = 300


def _embedded_count(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=1) as db:
            return db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_killed_embedding_resumes_where_it_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_photos(folder, N_PHOTOS)
    workspace = tmp_path / "ws"
    command = [sys.executable, "-m", "imgcluster.cli", "embed", str(folder), "--workspace", str(workspace),
               "--model", "efficientnet-lite0", "--batch-size", "4", "--commit-every", "8", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = workspace / "catalogue.db"
    deadline = time.time() + 240
    while _embedded_count(database) < 16 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = _embedded_count(database)
    assert 16 <= done_before_kill < N_PHOTOS, "the kill should land mid-embedding"

    resumed = imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", k=4)
    assert resumed.record.as_info()["embedding"] == {"new": N_PHOTOS - done_before_kill, "cached": done_before_kill}
    assert resumed.record.n_images == N_PHOTOS

    ws = imgcluster.open_workspace(workspace=workspace)
    assert ws.integrity_ok()
    assert len(ws.runs()) == 1  # the killed process never showed a half-written run
    # Vectors written before the kill equal those of an uninterrupted run.
    fresh = imgcluster.embed(resumed.images, workspace=imgcluster.open_workspace(workspace=tmp_path / "fresh"),
                             config=imgcluster.EmbedConfig(model="efficientnet-lite0"))
    stored = imgcluster.embed(resumed.images, workspace=ws, config=imgcluster.EmbedConfig(model="efficientnet-lite0"))
    assert stored.report.n_embedded == 0
    assert np.allclose(stored.vectors, fresh.vectors, atol=1e-5)
