"""What the commands say: which run they used by default, degenerate answers with what to try, and
the details the outputs used to leave out (names, parents, auto mode's choice, dedup counts)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import imgcluster
from imgcluster.cli import app
from imgcluster.runs import answer_warnings

from .conftest import write_photos

FAST = ["--model", "efficientnet-lite0", "--reduce", "pca", "--map", "pca", "--namer", "none"]


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0 and result.exception is None, result.output
    return result


def fast_config(**cluster: Any) -> imgcluster.RunConfig:
    """PCA instead of UMAP (seconds instead of a minute on a loaded machine), no namer."""
    config = imgcluster.RunConfig()
    return dataclasses.replace(
        config, reduce=dataclasses.replace(config.reduce, method="pca", map_method="pca"),
        cluster=dataclasses.replace(config.cluster, **cluster), name=imgcluster.NameConfig(namer="none"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One workspace, oldest run first: a --dedup run and an auto run made by the command, a k-means
    run (k=4), then two runs without clusters: --preset ifunny (min_cluster_size 1000 on 25 images)
    and a stray run of a single file."""
    root = tmp_path_factory.mktemp("cli-output")
    photos = root / "photos"
    write_photos(photos, 24)
    shutil.copyfile(photos / "photo-0005.jpg", photos / "copy-of-0005.jpg")  # an exact duplicate for --dedup
    workspace = photos / ".imgcluster"
    made: dict[str, Any] = {"photos": photos, "workspace": workspace}
    made["dedup_text"] = cli("cluster", str(photos), *FAST, "--k", "4", "--dedup").stdout
    made["dedup"] = imgcluster.list_runs(photos)[0].key
    made["auto_json"] = json.loads(cli("cluster", str(photos), *FAST, "--json").stdout)
    made["kmeans"] = imgcluster.cluster(photos, config=fast_config(k=4), model="efficientnet-lite0")
    made["ifunny_text"] = cli("cluster", str(photos), *FAST, "--preset", "ifunny").output
    made["ifunny"] = imgcluster.list_runs(photos)[0].key
    made["stray"] = imgcluster.cluster(photos / "photo-0001.jpg", workspace=workspace, config=fast_config(),
                                       model="efficientnet-lite0")
    return made


# -- item 6: the default run ----------------------------------------------------------------------

def test_the_default_run_is_the_newest_with_clusters_and_commands_say_so(runs: dict[str, Any]) -> None:
    good, stray = runs["kmeans"], runs["stray"]
    assert stray.record.n_clusters == 0 and imgcluster.list_runs(runs["photos"])[0].key == stray.key
    chosen = imgcluster.default_run(runs["photos"])
    assert chosen.key == good.key
    assert stray.key in chosen.reason and runs["ifunny"] in chosen.reason  # the newer runs it passed over
    assert imgcluster.load_run(path=runs["photos"]).key == good.key
    result = cli("report", str(runs["photos"]))
    assert f"using run {good.key}" in result.stderr and "newest run with clusters" in result.stderr
    assert result.stdout.strip() == str(runs["workspace"] / "runs" / good.key / "report.html")  # stdout stays clean


def test_predict_files_into_the_default_run_with_cluster_names(runs: dict[str, Any]) -> None:
    good = runs["kmeans"]
    image = runs["photos"] / "photo-0002.jpg"
    cluster = int(good.assignments.clusters[[r.path for r in good.images].index(str(image))])
    imgcluster.name_cluster(cluster, "checkerboards", good.key, path=runs["photos"])
    shown = cli("predict", str(image), "--folder", str(runs["photos"]))
    assert f"using run {good.key}" in shown.stderr
    assert f"filed into run {good.key}" in shown.stdout and "checkerboards" in shown.stdout
    filed = json.loads(cli("predict", str(image), "--folder", str(runs["photos"]), "--json").stdout)
    assert (filed[0]["status"], filed[0]["cluster"], filed[0]["name"]) == ("assigned", cluster, "checkerboards")


def test_a_run_without_clusters_is_refused_for_filing_naming_the_runs_that_work(runs: dict[str, Any]) -> None:
    good, stray = runs["kmeans"], runs["stray"]
    image = runs["photos"] / "photo-0002.jpg"
    with pytest.raises(imgcluster.ConfigError, match=f"Run {stray.key} has no clusters.*{good.key}"):
        imgcluster.predict([image], run=stray.key, path=runs["photos"])
    with pytest.raises(imgcluster.ConfigError, match=f"Run {runs['ifunny']} has no clusters.*{good.key}"):
        imgcluster.update(runs["photos"], run=runs["ifunny"])


def test_update_by_default_grows_the_newest_run_with_clusters_and_show_names_its_parent(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 12)
    good = imgcluster.cluster(photos, config=fast_config(k=4), model="efficientnet-lite0")
    stray = imgcluster.cluster(photos / "photo-0003.jpg", workspace=photos / ".imgcluster", config=fast_config(),
                               model="efficientnet-lite0")
    assert stray.record.n_clusters == 0
    write_photos(photos, 1, start=100)
    result = cli("update", str(photos), "--no-propose", "--json")
    assert f"using run {good.key}" in result.stderr
    done = json.loads(result.stdout)
    assert done["parent"] == good.key and done["new_images"] == 1
    shown = cli("runs", "show", "--folder", str(photos))
    assert f"using run {done['run']}" in shown.stderr
    assert f"derived from run {good.key} by `imgcluster update`" in " ".join(shown.stdout.split())


def test_runs_show_names_an_edited_runs_parent(runs: dict[str, Any], tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(runs["workspace"], workspace)
    good = runs["kmeans"]
    clusters = sorted({int(c) for c in good.assignments.clusters if c >= 0})[:2]
    merged = imgcluster.merge_clusters(clusters, good.key, workspace=workspace)
    text = " ".join(cli("runs", "show", merged.key, "--workspace", str(workspace)).stdout.split())
    assert f"derived from run {good.key} by an edit: merged clusters {clusters[0]}, {clusters[1]}" in text


# -- item 7: degenerate answers say so ------------------------------------------------------------

def test_a_preset_too_big_for_the_collection_warns_with_what_to_try(runs: dict[str, Any]) -> None:
    key = runs["ifunny"]
    info = imgcluster.run_info(key, path=runs["photos"])
    assert info["n_clusters"] == 0
    assert len(info["warnings"]) == 1
    warning = info["warnings"][0]
    assert "min_cluster_size 1000 is larger than the 25 images" in warning
    assert "--preset default" in warning and "--min-cluster-size" in warning
    assert "min_cluster_size 1000 is larger than the 25 images" in " ".join(runs["ifunny_text"].split())
    assert "warning:" in runs["ifunny_text"]
    shown = " ".join(cli("runs", "show", key, "--folder", str(runs["photos"])).stdout.split())
    assert "min_cluster_size 1000 is larger than the 25 images" in shown
    report = (runs["workspace"] / "runs" / key / "report.html").read_text()
    assert "id='warnings'" in report and "min_cluster_size 1000 is larger than the 25 images" in report


def test_a_single_image_run_says_there_is_nothing_to_group(runs: dict[str, Any]) -> None:
    assert runs["stray"].warnings and "Only 1 image" in runs["stray"].warnings[0]


def test_a_run_with_an_answer_has_no_warning(runs: dict[str, Any]) -> None:
    assert runs["kmeans"].warnings == [] and runs["auto_json"]["warnings"] == []
    report = (runs["workspace"] / "runs" / runs["kmeans"].key / "report.html").read_text()
    assert "id='warnings'" not in report


@pytest.mark.parametrize("n_clusters, noise, clustering, expected", [
    (3, 0.6, {"method": "hdbscan", "min_cluster_size": 40, "noise": "keep"},
     ["60% of the images are unclustered", "--noise attach", "this run used 40", "--method kmeans"]),
    (3, 0.7, {"method": "hdbscan", "min_cluster_size": 40, "noise": "attach", "attach_threshold": 0.5},
     ["70% of the images are unclustered", "lower --attach-threshold (this run used 0.5)"]),
    (1, 0.0, {"method": "kmeans", "k": 1}, ["Only one cluster: k=1 asks for one", "larger --k"]),
    (1, 0.1, {"method": "hdbscan", "min_cluster_size": 300}, ["Only one cluster", "smaller --min-cluster-size"]),
    (0, 1.0, {"method": "hdbscan", "min_cluster_size": 300},
     ["No clusters: min_cluster_size 300 is more than half of the 500 images", "--min-cluster-size 5"]),
    (0, 1.0, {"method": "hdbscan", "min_cluster_size": 20}, ["No clusters: no group of 20", "--min-cluster-size 5"]),
])
def test_degenerate_answers_get_a_warning_with_what_to_try(n_clusters: int, noise: float,
                                                           clustering: dict[str, Any], expected: list[str]) -> None:
    warnings = " ".join(answer_warnings(500, {"n_clusters": n_clusters, "noise_fraction": noise}, clustering))
    assert all(text in warnings for text in expected), warnings


def test_a_sound_answer_gets_no_warning() -> None:
    assert answer_warnings(500, {"n_clusters": 8, "noise_fraction": 0.5}, {"method": "hdbscan",
                                                                         "min_cluster_size": 5}) == []


# -- item 8: what the outputs leave out -----------------------------------------------------------

def test_cluster_json_has_auto_modes_choice_and_reason(runs: dict[str, Any]) -> None:
    auto = runs["auto_json"]["auto"]
    assert runs["auto_json"]["method"] == "auto" and auto["choice"]
    assert auto["reason"].startswith(auto["choice"])
    assert runs["auto_json"]["algorithm"] in ("hdbscan", "kmeans")


def test_cluster_dedup_says_how_many_images_it_set_aside(runs: dict[str, Any]) -> None:
    info = imgcluster.run_info(runs["dedup"], path=runs["photos"])
    duplicates = info["clustering"]["dedup"]["duplicates"]
    assert duplicates >= 1  # the byte-identical copy, at least
    text = " ".join(runs["dedup_text"].split())
    assert f"--dedup: {duplicates:,} duplicate image(s) set aside" in text
    assert f"{25 - duplicates:,} images clustered" in text


def test_report_map_caption_names_the_map_method(runs: dict[str, Any]) -> None:
    report = (runs["workspace"] / "runs" / runs["kmeans"].key / "report.html").read_text()
    assert "placed by a 2-D PCA projection of its embedding" in report and "UMAP" not in report.split("<script")[0]


def test_a_kmeans_run_stores_and_shows_only_the_knobs_it_used(runs: dict[str, Any]) -> None:
    kmeans = runs["kmeans"].record.config["cluster"]
    assert kmeans["method"] == "kmeans" and kmeans["k"] == 4
    assert not {"min_cluster_size", "min_samples", "alpha", "cluster_selection_method"} & set(kmeans)
    assert imgcluster.RunConfig.from_dict(runs["kmeans"].record.config).cluster.k == 4  # still replays
    shown = cli("runs", "show", runs["kmeans"].key, "--folder", str(runs["photos"])).stdout
    assert "k=4" in shown and "alpha" not in shown and "cluster_selection_method" not in shown
    report = (runs["workspace"] / "runs" / runs["kmeans"].key / "report.html").read_text()
    assert "cluster_selection_method" not in report.split("<script")[0]
    hdbscan = imgcluster.run_info(runs["ifunny"], path=runs["photos"])["config"]["cluster"]
    assert (hdbscan["min_cluster_size"], hdbscan["alpha"], hdbscan["cluster_selection_method"]) == (1000, 2.0, "leaf")
    assert "k" not in hdbscan


@pytest.mark.parametrize("width", [80, 100])
def test_runs_list_stays_readable_in_a_narrow_terminal(runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                       width: int) -> None:
    import imgcluster.cli.runs as runs_cli

    out = io.StringIO()
    monkeypatch.setattr(runs_cli, "console", Console(file=out, width=width, color_system=None))
    cli("runs", "list", str(runs["photos"]))
    text = out.getvalue()
    listed = imgcluster.list_runs(runs["photos"])
    assert all(len(line) <= width for line in text.splitlines())
    for run in listed:
        assert run.key in text and "efficientnet-lite0" in text
        assert runs_cli._date(run.created_at) in text
        assert f"{run.n_images:,} image{'s' if run.n_images > 1 else ''} · {run.n_clusters} clusters" in text


def test_runs_list_is_a_table_when_wide(runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import imgcluster.cli.runs as runs_cli

    out = io.StringIO()
    monkeypatch.setattr(runs_cli, "console", Console(file=out, width=160, color_system=None))
    cli("runs", "list", str(runs["photos"]))
    header = next(line for line in out.getvalue().splitlines() if "key" in line)
    assert header.split() == ["key", "date", "model", "method", "images", "k", "unclustered", "silhouette",
                              "unstable"]


def test_names_with_brackets_are_printed_as_they_are(tmp_path: Path) -> None:
    """Rich reads "[a]" in a table cell as a style and drops it: a folder of "[a] photo-0001.jpg"
    files in a "[b] trip" folder, and a cluster named "[draft] …", must show those words everywhere."""
    folder = tmp_path / "[b] trip"
    for path in write_photos(folder, 12):
        path.rename(path.with_name(f"[a] {path.name}"))
    (folder / "[i] empty.jpg").write_bytes(b"")
    clustered = CliRunner().invoke(app, ["cluster", str(folder), "--k", "2", *FAST], env={"COLUMNS": "250"})
    assert clustered.exit_code == 0, clustered.output
    examples = [line for line in clustered.output.splitlines() if "photo-" in line]
    assert examples and all("[a] photo-" in line for line in examples), clustered.output
    assert f"Report: {folder}" in clustered.output and "[i] empty.jpg" in clustered.output
    cli("name", "0", "[draft] shapes", "--folder", str(folder))
    filed = CliRunner().invoke(app, ["predict", str(folder / "[a] photo-0001.jpg"), "--folder", str(folder)],
                               env={"COLUMNS": "250"})
    assert filed.exit_code == 0, filed.output
    assert filed.output.count("[a] photo-0001.jpg") == 2  # the image, and itself as its nearest
    shown = CliRunner().invoke(app, ["runs", "show", "--folder", str(folder)], env={"COLUMNS": "250"}).output
    assert "[draft] shapes" in shown and f"folder {folder}" in shown
    # `report` prints the bare path, for scripts: whole, brackets and all (given as PATH or --folder)
    for given in ([str(folder)], ["--folder", str(folder)]):
        written = CliRunner().invoke(app, ["report", *given], env={"COLUMNS": "250"})
        assert written.exit_code == 0 and Path(written.stdout.strip()).is_file(), written.output
