"""Every command refuses a bad value the same way: one line on stderr that says what to do, exit
code 2, no traceback, and nothing done first (no scan, no embedding, no file written).

The bad values are the ones people type: missing files, numbers out of range, unknown names, a file
where a folder belongs, a pipe where an image belongs, a run key that does not exist. A new command
fails `test_every_command_has_bad_values_listed` until it gets its own cases here.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from imgcluster.cli import app, main
from imgcluster.config import RunConfig
from imgcluster.store import Assignments, RunRecord, ScannedFile, Workspace

# {name} fields are filled from the `place` fixture. No case may need a GPU, the network, or a run
# with real embeddings: each is refused before any of them would be used.
BAD_VALUES: dict[str, list[list[str]]] = {
    "cluster": [["cluster", "{missing}"], ["cluster", "{images}", "--seed", "-1"],
                ["cluster", "{images}", "--seed", "99999999999"], ["cluster", "{images}", "--device", "foo"],
                ["cluster", "{images}", "--workspace", "{file}"], ["cluster", "{images}", "--workspace", "/dev/null"],
                ["cluster", "{images}", "--workspace", "/proc/imgcluster"], ["cluster", "{images}", "--k", "0"],
                ["cluster", "{images}", "--k", "many"], ["cluster", "{images}", "--model", "no-such-model"],
                ["cluster", "{images}", "--preset", "nope"], ["cluster", "{images}", "--min-side", "0"],
                ["cluster", "{images}", "--follow", "no-such-run"], ["cluster", "{images}", "--run-key", "a/b"],
                ["cluster", "{images}", "--method", "dbscan", "--k", "7"],
                ["cluster", "{images}", "--set", "cluster.k=many"],
                ["cluster", "{images}", "--set", "cluster.colour=3"],
                ["cluster", "{images}", "--reduce", "pca", "--map", "pca", "--set", "reduce.n_neighbors=30"],
                ["cluster", "{images}", "--backend", "tensorrt"],
                ["cluster", "{images}", "--set", "embed.precision=int8"]],
    "embed": [["embed", "{missing}"], ["embed", "{images}", "--workers", "99"],
              ["embed", "{images}", "--workers", "0"], ["embed", "{images}", "--engine", "spark"],
              ["embed", "{images}", "--device", "cuda:x"], ["embed", "{images}", "--workspace", "{file}"],
              ["embed", "{images}", "--batch-size", "0"], ["embed", "{images}", "--set", "cluster.k=3"],
              ["embed", "{images}", "--backend", "fastest"],
              ["embed", "{images}", "--engine", "ray", "--backend", "onnxruntime"],
              ["embed", "{images}", "--backend", "torch", "--set", "embed.precision=int4"]],
    "report": [["report", "{missing}"], ["report", "{images}", "--run", "no-such-run"],
               ["report", "--workspace", "{file}"]],
    "name": [["name", "99", "cats", "--folder", "{images}"], ["name", "0", "cats", "--folder", "{images}", "--run",
                                                                "no-such-run"], ["name", "zero", "cats"]],
    "names": [["names", "--folder", "{images}", "--run", "no-such-run"],
              ["names", "--folder", "{images}", "--namer", "nope"],
              ["names", "--folder", "{images}", "--namer", "zero-shot", "--vocabulary", "{missing}"],
              ["names", "--folder", "{images}", "--images-per-cluster", "0"],
              ["names", "--folder", "{images}", "--vocabulary", "{file}"]],
    "export": [["export", "{file}", "--folder", "{images}"], ["export", "{new}", "--folder", "{images}", "--to", "zip"],
               ["export", "{new}", "--folder", "{images}", "--run", "no-such-run"],
               ["export", "{new}", "--folder", "{images}", "--run", "r1", "--level", "medium"],
               ["export", "{new}", "--folder", "{images}", "--run", "r1", "--level", "5"]],
    "predict": [["predict", "{missing}", "--folder", "{images}"], ["predict", "{fifo}", "--folder", "{images}"],
                ["predict", "{images}", "--folder", "{images}"], ["predict", "{images}", "{image}"],
                ["predict", "{image}", "--folder", "{images}", "--device", "foo"],
                ["predict", "{image}", "--folder", "{images}", "--run", "no-such-run"]],
    "evaluate": [["evaluate", "--labels", "{missing}", "--folder", "{images}"],
                 ["evaluate", "--labels", "{images}", "--folder", "{images}"],
                 ["evaluate", "--labels", "{file}", "--folder", "{images}", "--run", "no-such-run"],
                 ["evaluate", "--labels", "{file}", "--folder", "{images}", "--run", "r1", "--level", "0"]],
    "demo": [["demo", "{file}"], ["demo", "{file}/digits"], ["demo", "{new}", "--limit", "0"]],
    "models": [["models", "--format", "csv"], ["models", "extra"]],
    "runs list": [["runs", "list", "{missing}"], ["runs", "list", "--workspace", "{file}"],
                  ["runs", "list", "{images}", "--folder", "{root}"], ["runs", "list", "--folder", "{missing}"]],
    "runs show": [["runs", "show", "no-such-run", "--folder", "{images}"],
                  ["runs", "show", "--workspace", "/dev/null"]],
    "doctor": [["doctor", "{missing}"], ["doctor", "--workspace", "{file}"], ["doctor", "{images}", "--device", "foo"]],
    "runs rm": [["runs", "rm", "no-such-run", "--folder", "{images}", "--yes"], ["runs", "rm"]],
    "runs compare": [["runs", "compare", "r1", "no-such-run", "--folder", "{images}"],
                     ["runs", "compare", "r1", "r1", "--folder", "{images}", "--moved", "-1"],
                     ["runs", "compare", "r1", "r1", "--folder", "{images}", "--level", "node:99"]],
    "tree": [["tree", "--folder", "{images}", "--run", "no-such-run"], ["tree", "--folder", "{missing}"],
             ["tree", "--folder", "{images}", "--run", "r1", "--level", "2"],
             ["tree", "--folder", "{images}", "--run", "r1", "--level", "node:x"],
             ["tree", "--folder", "{images}", "--run", "r1", "--level", "finest"]],
    "stability": [["stability", "{images}", "--repeats", "0"], ["stability", "{images}", "--subsample", "1.5"],
                  ["stability", "{images}", "--run", "no-such-run"], ["stability", "{missing}"],
                  ["stability", "--folder", "{images}", "--repeats", "0"]],
    "similar": [["similar", "{missing}", "--folder", "{images}"], ["similar", "{fifo}"],
                ["similar", "{image}", "--folder", "{images}", "-k", "0"],
                ["similar", "{image}", "--folder", "{images}", "--device", "foo"]],
    "search": [["search", "cats", "--folder", "{images}", "-k", "0"], ["search", "  ", "--folder", "{images}"],
               ["search", "cats", "--folder", "{missing}"], ["search", "cats", "--folder", "{images}",
                                                               "--device", "tpu"]],
    "duplicates": [["duplicates", "{missing}"], ["duplicates", "{images}", "--detectors", "md5"],
                   ["duplicates", "{images}", "--hamming", "99"], ["duplicates", "{images}", "--similarity", "2"],
                   ["duplicates", "{images}", "--crop-hamming", "30"], ["duplicates", "{images}", "--crop-hamming", "-1"],
                   ["duplicates", "{images}", "--export", "{new}.txt"],
                   ["duplicates", "{images}", "--device", "foo"]],
    "update": [["update", "{missing}"], ["update", "{images}", "--min-probability", "2"],
               ["update", "{images}", "--run", "no-such-run"], ["update", "{images}", "--watch", "0"]],
    "proposals": [["proposals", "{images}", "--run", "no-such-run"], ["proposals", "{images}", "--accept", "99"],
                  ["proposals", "{missing}"], ["proposals", "{images}", "--folder", "{root}"]],
    "serve": [["serve", "{images}", "--port", "99999"], ["serve", "{images}", "--port", "-1"],
              ["serve", "{images}", "--port", "0"], ["serve", "{missing}"], ["serve", "--workspace", "{new}"],
              ["serve", "{images}", "--max-upload-mb", "0"], ["serve", "{images}", "--host", "no-such-host.invalid"]],
}

# A refusal names the next step: an instruction, or the rule the value has to keep.
SAYS_WHAT_TO_DO = re.compile(r"\b(Give|give|Choose|choose|Pick|pick|Pass|pass|Use|use|Leave|leave|Add|add|Run|"
                             r"Check|See|Export to|must|needs?)\b")


def command_paths(group: object, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every runnable command of a click group, sub-groups walked: "cluster", "runs list", …"""
    for name, command in getattr(group, "commands", {}).items():
        if hasattr(command, "commands"):
            yield from command_paths(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def test_every_command_has_bad_values_listed() -> None:
    commands = set(command_paths(typer.main.get_command(app)))
    assert commands - set(BAD_VALUES) == set(), "add bad command lines for these commands to BAD_VALUES"
    assert set(BAD_VALUES) - commands == set(), "these commands no longer exist"


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A folder of two images with a workspace holding one run (r1, made without embedding anything),
    a plain file, a FIFO, and names that do not exist."""
    root = tmp_path_factory.mktemp("bad-values")
    images = root / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(images / f"image-{i}.png")
    (root / "file.txt").write_text("not a folder, not a labels table\n")
    os.mkfifo(root / "fifo")
    ws = Workspace.open(images / ".imgcluster")
    try:
        ws.save_scanned([ScannedFile(str(images / f"image-{i}.png"), 1, 1, f"hash-{i}", "PNG", 32, 32, "ok")
                         for i in range(2)])
        ids = np.array(sorted(r.id for r in ws.known_files(str(images)).values()))
        info = {"clusters": [{"cluster": 0, "size": 2, "mean_membership_probability": 1.0,
                              "representatives": ids.tolist()}]}
        ws.save_run(RunRecord.from_info("r1", time.time(), str(images), "m", "m", 2, 1, RunConfig().to_dict(),
                                        info),
                    Assignments(ids, np.zeros(2, dtype=np.int64), np.ones(2), np.zeros(2), np.zeros(2)))
    finally:
        ws.close()
    return {"images": str(images), "image": str(images / "image-0.png"), "file": str(root / "file.txt"),
            "fifo": str(root / "fifo"), "missing": str(root / "missing"), "new": str(root / "new"),
            "root": str(root)}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``imgcluster ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        main(args)
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


def outside_workspaces(root: str) -> set[Path]:
    """Every path under ``root`` except inside workspaces (reading one may touch its SQLite files)."""
    return {p for p in Path(root).rglob("*") if ".imgcluster" not in p.parts}


@pytest.mark.parametrize("template", [args for cases in BAD_VALUES.values() for args in cases],
                         ids=lambda args: " ".join(args))
def test_a_bad_value_gets_one_line_saying_what_to_do_and_exit_code_2(
        template: list[str], place: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(place["root"])  # a workspace made by mistake would show up here, not in the checkout
    args = [part.format(**place) for part in template]
    before = outside_workspaces(place["root"])
    code, out, err = run_cli(args, capsys)
    said = (out + err).strip()
    assert code == 2, said
    assert "Traceback" not in said and len(said.splitlines()) == 1, said
    assert out == "" and err.startswith("error: "), said
    assert SAYS_WHAT_TO_DO.search(err), f"the message should say what to do: {err}"
    assert outside_workspaces(place["root"]) == before, "refused, but only after writing files"


def test_serve_refuses_a_port_in_use_before_saying_it_serves(place: dict[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_cli(["serve", place["images"], "--port", str(port)], capsys)
    assert code == 2 and out == "" and "serving" not in err
    assert f"127.0.0.1:{port}" in err and "pick another --port" in err


def test_cuda_asked_for_on_a_machine_without_it_fails_before_any_work(
        place: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    untouched = Path(place["root"]) / "never-created"
    for args in (["cluster", place["images"], "--device", "cuda", "--workspace", str(untouched)],
                 ["embed", place["images"], "--device", "cuda:1", "--workspace", str(untouched)],
                 ["predict", place["image"], "--folder", place["images"], "--device", "cuda"]):
        code, out, err = run_cli(args, capsys)
        assert code == 2 and out == "", err
        assert "No CUDA device here" in err and "use --device cpu or auto" in err
    assert not untouched.exists()


def test_predict_refuses_a_fifo_without_opening_it(place: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # Opening a FIFO for reading blocks until a writer comes: reaching open() would hang this test.
    code, _, err = run_cli(["predict", place["image"], place["fifo"], "--folder", place["images"]], capsys)
    assert code == 2 and "is not a regular file" in err and place["fifo"] in err


def test_predict_given_the_clustered_folder_first_says_to_give_it_with_folder(
        place: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # `cluster FOLDER` takes the folder first, so a new user writes `predict FOLDER IMAGE`: the answer
    # must name --folder, not a missing workspace where the command was started.
    monkeypatch.chdir(place["root"])
    code, out, err = run_cli(["predict", place["images"], place["image"]], capsys)
    assert code == 2 and out == ""
    assert f"imgcluster predict --folder {place['images']} IMAGE" in " ".join(err.split())


def test_commands_taking_the_folder_as_path_take_it_as_folder_too(place: dict[str, str],
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # `names`, `tree` and `predict` take --folder; a user who learnt that form must not be refused by
    # `runs list`, `proposals`, `doctor` or `report`, which take the folder as PATH.
    monkeypatch.chdir(place["root"])  # no workspace here: only the folder given can answer
    def answer(args: list[str]) -> tuple[int, str]:
        try:
            main(args)
        except SystemExit as stopped:
            return stopped.code or 0, capsys.readouterr().out
        return 0, capsys.readouterr().out

    for command in (["runs", "list"], ["proposals"], ["doctor"], ["report"]):
        as_path, as_option = answer([*command, place["images"]]), answer([*command, "--folder", place["images"]])
        assert as_option[0] == as_path[0] == 0, (command, as_option)
        assert as_option[1] == as_path[1] and as_option[1].strip(), command
