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


# Runs as schema 7 stored them: one loose dict per run, derivations under "update", "edit" or
# clustering["follows"] (an update of an edited run kept its parent's stale "edit" beside it).
_CLUSTERS = [{"cluster": 0, "size": 2, "mean_membership_probability": 0.9, "representatives": [1, 2]},
             {"cluster": -1, "size": 1, "mean_membership_probability": 0.0, "representatives": [3]}]
_OLD_RUNS = {
    "fit": {"model": {"name": "m", "dim": 8}, "metrics": {"n_clusters": 1}, "warnings": ["few"],
            "clustering": {"algorithm": "hdbscan", "min_cluster_size": 2}, "clusters": _CLUSTERS,
            "representatives": [{"cluster": 0, "central": [1], "probable": [2], "diverse": []}],
            "embedding": {"new": 3, "cached": 0}, "naming": {"namer": "imagenet"}, "timings": {"scan": 1.0},
            "skipped": 2, "custom": "kept"},
    "followed": {"clustering": {"algorithm": "hdbscan", "follows": {"run": "fit", "shared_images": 3,
                                                                     "matched": [], "new_clusters": [0], "ended": []}}},
    "edited": {"edit": {"parent": "fit", "action": "merge", "clusters": [0, 1], "into": 0}},
    "updated": {"edit": {"parent": "fit", "action": "merge", "clusters": [0, 1], "into": 0},
                "update": {"parent": "edited", "new_images": 4, "removed_images": 1, "changed_images": 0,
                           "proposed": [{"cluster": 5, "size": 3, "new_images": 2, "representatives": [7]}],
                           "reasons": {"7": "proposed: alike"}}},
    "reviewed": {"update": {"parent": "updated", "new_images": 0, "removed_images": 0, "changed_images": 0,
                            "proposed": [], "reasons": {}, "reviewed": {"accepted": [5], "rejected": []}}},
}


def _schema_7_workspace(path: Path) -> Path:
    """A workspace as schema 7 left it: runs stored as loose dicts (``_OLD_RUNS``)."""
    import json

    ws = Workspace.open(path)
    ws._db.execute("UPDATE meta SET value='7' WHERE key='schema_version'")
    for n, (key, info) in enumerate(_OLD_RUNS.items()):
        ws._db.execute("INSERT INTO runs VALUES(?, ?, '/x', 'm', 'm', 3, 1, '{}', ?)", (key, float(n), json.dumps(info)))
    ws._db.commit()
    ws.close()
    return path


def test_runs_saved_before_the_typed_record_load_and_are_upgraded(tmp_path: Path) -> None:
    import json

    ws = Workspace.open(_schema_7_workspace(tmp_path / "ws"))
    try:
        fit, followed, edited, updated, reviewed = (ws.run(key) for key in _OLD_RUNS)
        ws.lock()  # a writer: the upgrade is written before anything else
        stored = json.loads(ws._db.execute("SELECT info FROM runs WHERE key='fit'").fetchone()[0])
        version = ws._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    finally:
        ws.close()
    assert stored["format"] == 2 and version == "8"  # the upgrade rewrote the row, it did not only read it
    assert (fit.provenance.how, fit.parent) == ("fit", None)
    assert fit.clusters[0].representatives == [1, 2] and fit.clusters[1].name == "unclustered"
    assert fit.representatives[0].ordered() == [(1, ("central",)), (2, ("probable",))]
    assert (fit.embedding.new, fit.skipped, fit.naming.namer, fit.warnings) == (3, 2, "imagenet", ["few"])
    assert fit.clustering == {"algorithm": "hdbscan", "min_cluster_size": 2} and fit.extra == {"custom": "kept"}
    assert (followed.provenance.how, followed.parent, followed.provenance.details["shared_images"]) == (
        "follow", "fit", 3)
    assert "follows" not in followed.clustering
    assert (edited.provenance.how, edited.parent, edited.provenance.details) == (
        "edit", "fit", {"action": "merge", "clusters": [0, 1], "into": 0})
    assert (updated.provenance.how, updated.parent) == ("update", "edited")  # the newer derivation wins
    assert updated.proposed[0].cluster == 5 and updated.reasons == {7: "proposed: alike"}
    assert (reviewed.provenance.how, reviewed.provenance.details["accepted"]) == ("review", [5])
    # The keys imgcluster always showed (runs show --json) read as before.
    assert fit.as_info()["custom"] == "kept" and edited.as_info()["edit"] == _OLD_RUNS["edited"]["edit"]
    assert updated.as_info()["update"]["reasons"] == {7: "proposed: alike"}
    assert followed.as_info()["clustering"]["follows"] == _OLD_RUNS["followed"]["clustering"]["follows"]
    assert reviewed.as_info()["update"]["reviewed"] == {"accepted": [5], "rejected": []}


def test_a_typed_run_record_survives_the_store(tmp_path: Path) -> None:
    from imgcluster.store import ClusterSummary, Naming, ProposedCluster, Provenance

    record = RunRecord("r", 1.0, "/x", "m", "m", 2, 1, {"preset": None}, metrics={"n_clusters": 1},
                       clusters=[ClusterSummary(0, 2, 0.5, [1, 2])], naming=Naming("vlm", {"vlm": "no key"}, None),
                       provenance=Provenance("update", "p", {"new_images": 2}), reasons={2: "filed"},
                       proposed=[ProposedCluster(4, 2, 2, [2])])
    with Workspace.open(tmp_path / "ws") as ws:
        ws.save_run(record, Assignments(np.array([1, 2]), np.array([0, 0]), np.ones(2), np.zeros(2), np.zeros(2)))
        assert ws.run("r") == record


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_reading_an_older_workspace_writes_nothing(tmp_path: Path) -> None:
    import imgcluster

    ws_path = _schema_7_workspace(tmp_path / "ws")
    before = _files(ws_path)
    listed = imgcluster.list_runs(workspace=ws_path)
    shown = imgcluster.run_info("updated", workspace=ws_path)
    with Workspace.open(ws_path, create=False) as ws:
        edited = ws.run("edited")
    assert _files(ws_path) == before  # the catalogue's bytes and times, and no file added or removed
    # ...and it reads as the upgraded runs would.
    assert sorted(r.key for r in listed) == sorted(_OLD_RUNS)
    assert (shown["update"]["parent"], shown["update"]["proposed"][0]["cluster"]) == ("edited", 5)
    assert (edited.provenance.how, edited.provenance.details["into"]) == ("edit", 0)
