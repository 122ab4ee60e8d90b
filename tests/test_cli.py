"""The `imgcluster` command: a thin layer that prints a table and the report path, or a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def imgcluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgcluster.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cluster_prints_table_and_report_path(photos: Path) -> None:
    result = imgcluster("cluster", str(photos), "--model", "efficientnet-lite0", "--k", "4")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "model efficientnet-lite0" in out
    assert "photo-00" in out  # member names in the table
    report = Path(out.split("Report:")[1].strip())
    assert report.name == "report.html" and report.exists(), out


def test_cluster_json_output(photos: Path) -> None:
    result = imgcluster("cluster", str(photos), "--model", "efficientnet-lite0", "--k", "4", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n_images"] == 24 and data["n_clusters"] == 4 and data["model"] == "efficientnet-lite0"
    assert Path(data["outputs"]["report"]).exists()
    again = imgcluster("report", str(photos))
    assert again.returncode == 0 and again.stdout.strip() == data["outputs"]["report"]


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    result = imgcluster("cluster", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    result = imgcluster("cluster", str(tmp_path), "--model", "no-such-model")
    assert result.returncode == 2 and "Choose one of" in result.stderr


def test_usage_mistakes_get_a_usage_message_not_a_traceback(tmp_path: Path) -> None:
    for args, words in [(["nonsense"], "No such command 'nonsense'"),
                        (["cluster", str(tmp_path), "--k", "abc"], "Invalid value for '--k'"),
                        (["names", str(tmp_path)], "unexpected extra argument")]:
        result = imgcluster(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr + result.stdout, result.stderr


def test_models_lists_the_bundled_default_as_available() -> None:
    result = imgcluster("models", "--json")
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["efficientnet-lite0"]["available"] is True
    assert rows["clip-vit-b32"]["source"] == "openai/clip-vit-base-patch32"
    assert {"siglip-base", "dinov2-small", "dinov2-base", "vit-mae-base"} <= set(rows)
    assert rows["vit-mae-base"]["pooling"] == "sum" and rows["dinov2-small"]["pooling"] == "cls"
    assert rows["siglip-base"]["pooling"] == "image-features" and rows["siglip-base"]["dim"] == 768
    assert all(row["size_mb"] > 0 for row in rows.values())
    table = imgcluster("models").stdout
    assert "~88 MB" in table and "dinov2-small" in table


def test_a_pooling_no_model_has_fails_before_any_work(photos: Path) -> None:
    untouched = photos.parent / "never-created"
    result = imgcluster("cluster", str(photos), "--pooling", "max", "--workspace", str(untouched))
    assert result.returncode == 2 and "No pooling called 'max'. Choose one of: image-features" in result.stderr
    assert not untouched.exists()


def test_options_given_with_a_preset_win_and_bad_settings_fail_before_any_work(photos: Path) -> None:
    result = imgcluster("cluster", str(photos), "--model", "efficientnet-lite0", "--preset", "ifunny",
                        "--min-cluster-size", "3", "--seed", "7", "--json")
    assert result.returncode == 0, result.stderr
    run_json = json.loads(Path(json.loads(result.stdout)["outputs"]["csv"]).with_name("run.json").read_text())
    assert run_json["config"]["preset"] == "ifunny"
    assert run_json["config"]["cluster"]["min_cluster_size"] == 3  # not the preset's 1000
    assert run_json["config"]["reduce"]["seed"] == 7 and run_json["config"]["reduce"]["n_neighbors"] == 70
    untouched = photos.parent / "never-created"
    result = imgcluster("cluster", str(photos), "--method", "spectral", "--workspace", str(untouched))
    assert result.returncode == 2 and "needs k" in result.stderr
    assert not untouched.exists()  # refused before scanning or embedding anything
    key = json.loads(imgcluster("cluster", str(photos), "--k", "2", "--run-key", "first", "--json").stdout)["run"]
    again = imgcluster("cluster", str(photos), "--k", "2", "--run-key", key)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_setting_the_method_ignores_is_refused_and_any_setting_reaches_the_run(photos: Path) -> None:
    untouched = photos.parent / "never-created"
    refused = imgcluster("cluster", str(photos), "--method", "dbscan", "--k", "7", "--workspace", str(untouched))
    assert refused.returncode == 2 and not untouched.exists()
    assert refused.stderr.strip().startswith("error: k applies to agglomerative, kmeans and spectral, not dbscan; "
                                             "drop --k or pick one of those methods.")
    result = imgcluster("cluster", str(photos), "--model", "efficientnet-lite0", "--method", "hdbscan",
                        "--min-samples", "2", "--reduce", "pca", "--set", "reduce.n_neighbors=6", "--set",
                        "name.namer=none", "--json")
    assert result.returncode == 0, result.stderr
    config = json.loads(Path(json.loads(result.stdout)["outputs"]["csv"]).with_name("run.json").read_text())["config"]
    assert (config["cluster"]["method"], config["cluster"]["min_samples"]) == ("hdbscan", 2)
    assert (config["reduce"]["method"], config["reduce"]["n_neighbors"], config["name"]["namer"]) == ("pca", 6, "none")


def test_reducer_map_and_noise_options_reach_the_run(photos: Path) -> None:
    result = imgcluster("cluster", str(photos), "--model", "efficientnet-lite0", "--reduce", "pca", "--map", "pca",
                        "--noise", "attach", "--attach-threshold", "0.2", "--json")
    assert result.returncode == 0, result.stderr
    csv_path = Path(json.loads(result.stdout)["outputs"]["csv"])
    config = json.loads(csv_path.with_name("run.json").read_text())["config"]
    assert (config["reduce"]["method"], config["reduce"]["map_method"]) == ("pca", "pca")
    assert (config["cluster"]["noise"], config["cluster"]["attach_threshold"]) == ("attach", 0.2)
    assert '"how"' in csv_path.read_text().splitlines()[0].split(",")
    bad = imgcluster("cluster", str(photos), "--noise", "drop")
    assert bad.returncode == 2 and "'keep' or 'attach'" in bad.stderr


def test_the_default_auto_mode_prints_and_stores_its_choice_and_reason(photos: Path) -> None:
    import imgcluster as ic

    result = imgcluster("cluster", str(photos), "--model", "efficientnet-lite0")
    assert result.returncode == 0, result.stderr
    record = ic.load_run(path=photos).record
    auto = record.as_info()["clustering"]["auto"]
    assert record.config["cluster"]["method"] == "auto"
    assert f"auto mode chose {auto['choice']}: highest score" in " ".join(result.stdout.split())
    assert {row["algorithm"] for row in auto["table"]} == {"hdbscan", "kmeans"}
    chosen = record.config["cluster"]  # the resolved config replays the choice
    assert any(row["k"] == chosen["k"] if row["algorithm"] == "kmeans" else
               (row["min_cluster_size"], row["min_samples"]) == (chosen["min_cluster_size"], chosen["min_samples"])
               for row in auto["table"] if row["algorithm"] == record.as_info()["clustering"]["algorithm"])


def test_embed_alone_then_cluster_reuses_the_vectors(photos: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    first = imgcluster("embed", str(photos), "--model", "efficientnet-lite0", "--workspace", str(workspace), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["embedded_now"] == summary["images"] > 0 and summary["model"] == "efficientnet-lite0"
    again = json.loads(imgcluster("embed", str(photos), "--model", "efficientnet-lite0", "--workspace",
                                  str(workspace), "--json").stdout)
    assert again["embedded_now"] == 0 and again["cached"] == summary["images"]
    run = imgcluster("cluster", str(photos), "--model", "efficientnet-lite0", "--workspace", str(workspace), "--json")
    run_json = json.loads(Path(json.loads(run.stdout)["outputs"]["csv"]).with_name("run.json").read_text())
    assert run_json["info"]["embedding"] == {"new": 0, "cached": summary["images"]}
