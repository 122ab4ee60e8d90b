"""Cluster colours are chosen when a run is saved and kept with it: the web app's cluster list reads
them without the run's per-image arrays (a fresh server's first frame waits for that list), an edit's
run keeps its own, and a run saved before colours were kept still gets them from its map."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

import imgcluster
from imgcluster.palette import map_colours
from imgcluster.web import create_app, state

from .conftest import copy_workspace


def chosen_on_map(run: imgcluster.Run) -> dict[int, str]:
    return map_colours(np.asarray(run.assignments.x), np.asarray(run.assignments.y), np.asarray(run.assignments.clusters))


def listed_colours(workspace: Path, key: str) -> dict[int, str]:
    """Each cluster's colour as /api/clusters gives it, from a fresh server (unclustered left out)."""
    with TestClient(create_app(workspace)) as client:
        rows = client.get("/api/clusters", params={"run": key}).json()["clusters"]
    return {row["cluster"]: row["colour"] for row in rows if row["cluster"] != -1}


def test_a_saved_run_keeps_its_colours_and_the_cluster_list_reads_no_arrays(digits_run: imgcluster.Run, tmp_path: Path,
                                                                             monkeypatch) -> None:
    chosen = chosen_on_map(digits_run)
    assert digits_run.record.colours == chosen and len(chosen) == digits_run.record.n_clusters
    assert imgcluster.load_run(digits_run.key, workspace=digits_run.workspace).record.colours == chosen
    workspace = copy_workspace(Path(digits_run.workspace), tmp_path / "workspace")

    def no_arrays(*args: object) -> None:
        raise AssertionError("the cluster list read the run's per-image arrays")

    monkeypatch.setattr(state, "assignment_arrays", no_arrays)
    assert listed_colours(workspace, digits_run.key) == chosen


def test_an_edit_keeps_the_colours_of_its_own_map(digits_run: imgcluster.Run, tmp_path: Path) -> None:
    workspace = copy_workspace(Path(digits_run.workspace), tmp_path / "workspace")
    a, b = [c.cluster for c in digits_run.clusters() if c.cluster != -1][:2]
    merged = imgcluster.merge_clusters([a, b], digits_run.key, workspace=workspace)
    stored = imgcluster.load_run(merged.key, workspace=workspace).record.colours
    assert stored == chosen_on_map(merged) and a in stored and b not in stored
    assert listed_colours(workspace, merged.key) == stored


def test_a_run_saved_before_colours_were_kept_still_gets_them(digits_run: imgcluster.Run, tmp_path: Path) -> None:
    workspace = copy_workspace(Path(digits_run.workspace), tmp_path / "workspace")
    with sqlite3.connect(workspace / "catalogue.db") as db:  # as an older imgcluster stored the run
        stored = json.loads(db.execute("SELECT info FROM runs WHERE key=?", (digits_run.key,)).fetchone()[0])
        del stored["colours"]
        db.execute("UPDATE runs SET info=? WHERE key=?", (json.dumps(stored), digits_run.key))
    db.close()
    assert imgcluster.load_run(digits_run.key, workspace=workspace).record.colours is None
    assert listed_colours(workspace, digits_run.key) == chosen_on_map(digits_run)
