"""The store opens workspaces written by older versions and brings them up to date."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgcluster.store import Assignments, RunRecord, Workspace


def test_a_workspace_without_the_how_column_is_upgraded_and_reads_as_fit(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    ws._db.execute("ALTER TABLE assignments DROP COLUMN how")  # as version 1 wrote it
    ws._db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    ws._db.execute("INSERT INTO runs VALUES('old', 0, '/x', 'm', 'm', 1, 1, '{}', '{}')")
    ws._db.execute("INSERT INTO assignments(run_key, image_id, cluster, membership_probability, x, y) "
                   "VALUES('old', 1, 0, 1.0, 0, 0)")
    ws._db.commit()
    ws.close()
    ws = Workspace.open(tmp_path / "ws")
    try:
        assert ws.assignments("old").how_per_image() == ["fit"]
        ws.save_run(RunRecord("new", 1.0, "/x", "m", "m", 2, 1, {}), Assignments(
            np.array([1, 2]), np.array([0, -1]), np.array([1.0, 0.0]), np.zeros(2), np.zeros(2),
            np.array(["filed", "attached"], dtype=object)))
        assert ws.assignments("new").how_per_image() == ["filed", "attached"]
    finally:
        ws.close()
