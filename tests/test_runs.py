"""Runs: list, show and delete them, compare two with numbers, and measure how stable each cluster is."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from typer.testing import CliRunner

import imgcluster
from imgcluster.cli import app
from imgcluster.runs import ABSENT, SPLIT_SHARE, cluster_stability, compare_assignments, consensus

RUN_TABLES = ("runs", "assignments", "cluster_names", "evaluations", "stability")


@pytest.fixture(scope="module")
def workspace(digits_run: imgcluster.Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the digits run's workspace: its cached embeddings are reused, and the shared
    workspace (whose newest run other tests read) gets no new run."""
    copy = tmp_path_factory.mktemp("runs") / "ws"
    shutil.copytree(digits_run.workspace, copy)
    return copy


def new_run(digits_dir: Path, workspace: Path, key: str, seed: int = 0, k: int | None = None) -> imgcluster.Run:
    config = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(seed=seed),
                                  cluster=imgcluster.ClusterConfig(seed=seed, k=k))
    return imgcluster.cluster(digits_dir / "images", workspace=workspace, model="efficientnet-lite0", namer="none",
                              config=config, run_key=key)


@pytest.fixture(scope="module")
def seed_1(digits_dir: Path, workspace: Path) -> imgcluster.Run:
    """The default settings again with seed 1 (the digits run used seed 0)."""
    return new_run(digits_dir, workspace, "seed-1", seed=1)


def cli(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def three_groups() -> tuple[np.ndarray, np.ndarray]:
    """Two tight, far-apart blobs (groups 0 and 1) and one evenly filled disc (group 2) that k=4
    must cut in two, in a direction the data barely prefers: the ambiguous group. (k-means keeps the
    best of 10 starts, so most seeds agree on the cut; its halves scored ~0.85 against the blobs' 1.0.)"""
    rng = np.random.default_rng(0)
    tight = [rng.normal(centre, 0.5, size=(150, 2)) for centre in ((-20, 0), (20, 0))]
    i = np.arange(300) + 0.5  # a sunflower spiral: a disc with no preferred direction
    radius, angle = 6 * np.sqrt(i / 300), i * np.pi * (3 - np.sqrt(5))
    disc = np.c_[radius * np.cos(angle), 20 + radius * np.sin(angle)]
    return np.vstack(tight + [disc]), np.repeat([0, 1, 2], [150, 150, 300])


# -- the logic, on plain arrays ---------------------------------------------------------------------

def test_compare_assignments_finds_matching_splits_merges_and_moved_points() -> None:
    a = np.repeat([0, 1, 2, 3, -1], [24, 16, 20, 20, 4])
    b = np.repeat([7, 7, 8, 9, 5, -1], [24, 16, 12, 8, 20, 4])  # 0 and 1 merge into 7; 2 splits into 8 and 9
    result = compare_assignments(a, b)
    assert result.ari == pytest.approx(adjusted_rand_score(a, b))
    assert result.nmi == pytest.approx(normalized_mutual_info_score(a, b))
    assert result.contingency.sum() == len(a) and result.clusters_a == [-1, 0, 1, 2, 3]
    assert {(m.a, m.b) for m in result.matching} == {(0, 7), (2, 8), (3, 5)}  # 1 and 9 stay unmatched
    assert [(s.cluster, s.parts) for s in result.merges] == [(7, [(0, 24), (1, 16)])]
    assert [(s.cluster, s.parts) for s in result.splits] == [(2, [(8, 12), (9, 8)])]
    # all of 1 (it went into 0's match) and the part of 2 that went to 9
    assert np.array_equal(np.flatnonzero(result.moved), np.r_[24:40, 52:60])
    # H(A|B) + H(B|A), written out
    h = [-(p * np.log(p)).sum() for p in (np.unique(x, return_counts=True)[1] / len(x) for x in (a, b))]
    assert result.variation_of_information == pytest.approx(h[0] + h[1] - 2 * _mutual_information(a, b))
    assert compare_assignments(a, a).variation_of_information == pytest.approx(0.0)


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import mutual_info_score

    return float(mutual_info_score(a, b))


def test_stability_marks_the_ambiguous_cluster_least_stable() -> None:
    x, group = three_groups()

    def fit(seed: int) -> np.ndarray:
        return imgcluster.cluster_points(x, imgcluster.ClusterConfig(k=4, seed=seed)).labels

    reference = fit(0)
    repeats = [fit(seed) for seed in range(1, 9)]
    stability = {c.cluster: c for c in cluster_stability(reference, repeats)}
    in_group = {c: int(np.bincount(group[reference == c]).argmax()) for c in stability}
    ambiguous = [c for c, g in in_group.items() if g == 2]
    clear = [c for c, g in in_group.items() if g != 2]
    assert len(ambiguous) == 2 and len(clear) == 2  # the disc cut in two; each tight blob whole
    assert min(stability[c].stability for c in clear) > 0.95
    assert max(stability[c].stability for c in ambiguous) < min(stability[c].stability for c in clear)
    assert min(stability.values(), key=lambda c: c.stability).cluster in ambiguous
    assert not any(stability[c].unstable for c in clear)
    # A cluster that every refit cuts in half keeps at most half of itself: flagged unstable.
    cut = reference.copy()
    rows = np.flatnonzero(reference == ambiguous[0])
    cut[rows[: len(rows) // 2]] = reference.max() + 1
    flagged = {c.cluster: c.unstable for c in cluster_stability(reference, [cut, cut, cut])}
    assert flagged[ambiguous[0]] and not any(flagged[c] for c in clear)
    agreed = consensus(reference, repeats)
    tight = group != 2
    assert np.array_equal(agreed.labels[tight], reference[tight]) and (agreed.agreement[tight] == 1).all()
    assert ((0 < agreed.agreement) & (agreed.agreement <= 1)).all()


def test_subsampled_refits_only_count_the_points_they_saw() -> None:
    x, group = three_groups()
    reference = imgcluster.cluster_points(x, imgcluster.ClusterConfig(k=4, seed=0)).labels
    repeats = []
    for seed in range(1, 6):
        rows = np.sort(np.random.default_rng(seed).choice(len(x), int(0.8 * len(x)), replace=False))
        labels = np.full(len(x), ABSENT)
        labels[rows] = imgcluster.cluster_points(x[rows], imgcluster.ClusterConfig(k=4, seed=seed)).labels
        repeats.append(labels)
    stability = {c.cluster: c.stability for c in cluster_stability(reference, repeats)}
    clear = {c for c in stability if np.bincount(group[reference == c]).argmax() != 2}
    assert all(stability[c] > 0.95 for c in clear)  # a blob stays whole though a fifth of it is missing
    assert max(v for c, v in stability.items() if c not in clear) < min(stability[c] for c in clear)
    agreed = consensus(reference, repeats)
    assert not (agreed.labels == ABSENT).any()  # every point was seen by the reference at least


# -- runs of the digits demo --------------------------------------------------------------------

def test_two_seeds_compare_with_the_ari_of_the_stored_assignments(workspace: Path, digits_run: imgcluster.Run,
                                                                  seed_1: imgcluster.Run) -> None:
    first, second = (imgcluster.load_run(key, workspace=workspace) for key in (digits_run.key, seed_1.key))
    assert np.array_equal(first.assignments.image_ids, second.assignments.image_ids)
    expected = adjusted_rand_score(first.assignments.clusters, second.assignments.clusters)
    result = imgcluster.compare_runs(digits_run.key, seed_1.key, workspace=workspace)
    assert result.ari == pytest.approx(expected)
    assert result.nmi == pytest.approx(normalized_mutual_info_score(first.assignments.clusters,
                                                                    second.assignments.clusters))
    assert result.n_common == digits_run.record.n_images and result.only_a == result.only_b == 0
    assert np.asarray(result.contingency).sum() == result.n_common
    matched = {m.a: m.b for m in result.matching} | {-1: -1}
    assert all(matched.get(m.cluster_a) != m.cluster_b for m in result.moved)
    output = cli("runs", "compare", digits_run.key, seed_1.key, "--workspace", str(workspace), "--json")
    assert output.exit_code == 0, output.output
    assert json.loads(output.stdout)["ari"] == pytest.approx(expected)
    table = cli("runs", "compare", digits_run.key, seed_1.key, "--workspace", str(workspace))
    assert "ARI" in table.stdout and "best one-to-one matching" in table.stdout
    best = max(result.matching, key=lambda m: m.overlap)  # its row names both clusters, id then name
    flat = " ".join(table.stdout.split())
    assert f"{best.a} {digits_run.names[best.a].name.split()[0]}" in flat


def test_k_minus_one_is_reported_as_a_merge_of_the_two_right_clusters(digits_dir: Path, workspace: Path) -> None:
    new_run(digits_dir, workspace, "k10", k=10)
    new_run(digits_dir, workspace, "k9", k=9)
    result = imgcluster.compare_runs("k10", "k9", workspace=workspace)
    table = np.asarray(result.contingency)
    # Each cluster of A lands mostly in one cluster of B; ten clusters into nine, so (pigeonhole) at
    # least one cluster of B is where two of them mostly land: that is the merge.
    sources: dict[int, list[int]] = {}
    for i, a in enumerate(result.clusters_a):
        sources.setdefault(result.clusters_b[int(table[i].argmax())], []).append(a)
    merged = {b: sorted(a) for b, a in sources.items() if len(a) >= 2}
    assert merged
    row, column = {a: i for i, a in enumerate(result.clusters_a)}, {b: j for j, b in enumerate(result.clusters_b)}
    for b, parts in merged.items():
        shares = [table[row[a], column[b]] / table[row[a]].sum() for a in parts]
        assert min(shares) >= SPLIT_SHARE, "the setup changed: a cluster of A no longer lands mostly in one of B"
        reported = {m.cluster: sorted(c for c, _ in m.parts) for m in result.merges}
        assert set(parts) <= set(reported.get(b, [])), (b, parts, result.merges)


def test_stability_of_a_digits_run_is_stored_flagged_in_the_report_and_listed(
        workspace: Path, digits_run: imgcluster.Run) -> None:
    output = cli("stability", "--workspace", str(workspace), "--run", digits_run.key, "--repeats", "2",
                 "--subsample", "0.9", "--json")
    assert output.exit_code == 0, output.output
    measured = json.loads(output.stdout)
    clustered = sorted(c.cluster for c in digits_run.clusters() if c.cluster != -1)
    assert [c["cluster"] for c in measured["clusters"]] == clustered
    assert all(0 <= c["stability"] <= 1 and len(c["per_repeat"]) == 2 for c in measured["clusters"])
    assert measured["seeds"] == [1, 2] and measured["subsample"] == 0.9
    assert measured["unstable_clusters"] == sorted(
        (c["cluster"] for c in measured["clusters"] if c["stability"] < measured["threshold"]),
        key=lambda c: next(x["stability"] for x in measured["clusters"] if x["cluster"] == c))
    with open(measured["outputs"]["consensus"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [r.path for r in digits_run.images]
    assert sum(r["cluster"] != r["consensus"] for r in rows) == measured["changed"]
    stored = imgcluster.run_info(digits_run.key, workspace=workspace)["stability"]
    assert len(stored) == 1 and stored[0]["clusters"] == measured["clusters"]
    html = Path(measured["outputs"]["report"]).read_text()
    data = json.loads(html.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    shown = {c["cluster"]: c for c in data["clusters"] if c["cluster"] != -1}
    assert all(shown[c["cluster"]]["unstable"] == c["unstable"] for c in measured["clusters"])
    assert "stability" in html and "refits" in html
    listed = {r.key: r for r in imgcluster.list_runs(workspace=workspace)}
    assert listed[digits_run.key].unstable_clusters == [c["cluster"] for c in measured["clusters"] if c["unstable"]]


def test_runs_list_and_show_through_the_command(workspace: Path, digits_run: imgcluster.Run,
                                                seed_1: imgcluster.Run) -> None:
    listed = cli("runs", "list", "--workspace", str(workspace), "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    keys = [r["key"] for r in rows]
    assert {digits_run.key, seed_1.key} <= set(keys)
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)  # newest first
    row = next(r for r in rows if r["key"] == seed_1.key)
    assert (row["model_name"], row["method"], row["seed"], row["n_images"]) == ("efficientnet-lite0", "auto", 1,
                                                                                seed_1.record.n_images)
    assert seed_1.key in cli("runs", "list", "--workspace", str(workspace)).stdout
    shown = cli("runs", "show", seed_1.key, "--workspace", str(workspace), "--json")
    info = json.loads(shown.stdout)
    chosen = "k" if info["clustering"]["algorithm"] == "kmeans" else "min_cluster_size"  # the automatic choice
    assert info["config"]["cluster"][chosen] >= 2 and info["requested_config"]["cluster"][chosen] is None
    assert {"versions", "timings", "metrics", "model", "clusters", "evaluations", "stability"} <= set(info)
    text = cli("runs", "show", seed_1.key, "--workspace", str(workspace)).stdout
    assert f"{chosen}=" in text and "(auto)" in text and "versions:" in text and "timings:" in text
    assert f"auto mode: {info['clustering']['auto']['choice']}" in " ".join(text.split())


def test_rm_asks_first_then_removes_the_rows_and_the_folder(digits_dir: Path, digits_run: imgcluster.Run,
                                                             tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(digits_run.workspace, workspace)
    key = digits_run.key
    imgcluster.evaluate(digits_dir / "labels.csv", key, workspace=workspace)  # an evaluation row to remove too
    declined = cli("runs", "rm", key, "--workspace", str(workspace), input="n\n")
    assert declined.exit_code == 1 and (workspace / "runs" / key).is_dir()
    assert _rows(workspace, key)["runs"] == 1
    done = cli("runs", "rm", key, "--workspace", str(workspace), input="y\n")
    assert done.exit_code == 0, done.output
    assert not (workspace / "runs" / key).exists()
    assert _rows(workspace, key) == dict.fromkeys(RUN_TABLES, 0)
    assert key not in {r.key for r in imgcluster.list_runs(workspace=workspace)}
    with pytest.raises(imgcluster.RunNotFound, match=f"No run '{key}'.*Recent runs"):
        imgcluster.delete_run(key, workspace=workspace)
    again = imgcluster.cluster(digits_dir / "images", workspace=workspace, model="efficientnet-lite0", k=5,
                               namer="none")
    assert again.record.as_info()["embedding"]["new"] == 0  # the embeddings stayed


def test_rm_removes_the_half_written_folder_a_killed_command_left(digits_run: imgcluster.Run, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(digits_run.workspace, workspace)
    half = workspace / "runs" / "killed"
    half.mkdir()
    (half / "assignments.npz").write_bytes(b"half of it")  # what a SIGKILL mid-save leaves: files, no run row
    done = cli("runs", "rm", "killed", "--workspace", str(workspace))
    assert done.exit_code == 0 and "half-written" in done.output and not half.exists()
    assert (workspace / "runs" / digits_run.key).is_dir()  # the saved run is untouched
    assert not imgcluster.discard_unsaved_run("killed", workspace=workspace)  # nothing left to remove
    assert not imgcluster.discard_unsaved_run(digits_run.key, workspace=workspace)  # a saved run: never
    assert (workspace / "runs" / digits_run.key).is_dir()


def _rows(workspace: Path, key: str) -> dict[str, int]:
    with sqlite3.connect(workspace / "catalogue.db") as db:
        return {table: db.execute(f"SELECT count(*) FROM {table} WHERE {'key' if table == 'runs' else 'run_key'}=?",
                                  (key,)).fetchone()[0] for table in RUN_TABLES}


def test_bad_keys_and_settings_say_what_to_do(workspace: Path, digits_run: imgcluster.Run) -> None:
    with pytest.raises(imgcluster.RunNotFound, match="No run 'nope'.*Recent runs: "):
        imgcluster.compare_runs(digits_run.key, "nope", workspace=workspace)
    with pytest.raises(imgcluster.ConfigError, match="repeats must be at least 1"):
        imgcluster.stability(workspace=workspace, repeats=0)
    with pytest.raises(imgcluster.ConfigError, match="between 0 and 1"):
        imgcluster.stability(workspace=workspace, subsample=1.5)
