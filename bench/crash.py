"""Does a SIGKILL at a random moment lose or corrupt anything?

Claim (issue 12): `imgcluster embed` killed 20 times at random points and resumed each time ends
with every image embedded exactly once, vectors equal to an uninterrupted run's, and a catalogue
that passes ``PRAGMA integrity_check``. `imgcluster cluster` killed while it scans, reduces,
clusters or writes its run leaves the previous run intact and listed, shows no half-written run
(`runs list`, ``load_run``), and the same command run again succeeds.

Kill points: half are a random delay after the process starts (import, scan, model load, the
first batches), half a random delay after the round's first commit (mid-embedding) or after the
run folder appears (mid-writing). The processes run with one OpenMP thread: on a busy 2-core
machine torch's spinning threads made 60 images take 35 s instead of 4 s.

A third round (issue 23) rewrites files while `imgcluster embed` scans and embeds them (each
rewrite swaps a file's picture for another, in place or by rename) and then checks that every
stored vector is the embedding of the bytes its content hash names: a file that changed between
the scan's hash and the embedding's read must not leave the new picture's vector under the old
content's hash.

    python bench/crash.py [--images 400] [--kills 20] [--cluster-kills 6] [--changing 4] [--seed 0]

``tests/test_crash.py`` runs the same loops with 3 kills on 60 images.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

import imgcluster
from imgcluster.cli import app
from imgcluster.scan import hash_bytes, load_rgb

MODEL = "efficientnet-lite0"
# A cheap clustering for the kill loop: the kill lands in the same steps as with the defaults
# (scan, embed cache, reduce, cluster, predictor, report, save) in a third of the time.
FAST_CLUSTER = ["--method", "kmeans", "--k", "4", "--reduce", "pca", "--map", "pca", "--namer", "none"]


@dataclass
class Kill:
    round: int
    trigger: str          # "start" or "progress" (first commit / run folder of this round)
    delay: float          # seconds after the trigger
    before: int           # embeddings (or runs) before the round
    at_kill: int          # embeddings when the signal was sent
    killed: bool          # False when the process had already finished

    def line(self) -> str:
        what = "killed" if self.killed else "finished first"
        return (f"  kill {self.round:2d}: {self.delay:5.2f} s after {self.trigger:8s} "
                f"{self.before:4d} -> {self.at_kill:4d} embedded  ({what})")


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` small JPEGs of four visual kinds with noise, so clusters exist."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:72, 0:96]
    kinds = [((xx // 8) % 2)[..., None] * np.array([200, 40, 40]),
             (((xx - 48) ** 2 + (yy - 36) ** 2) < 24 ** 2)[..., None] * np.array([30, 180, 60]),
             (((xx // 12) + (yy // 12)) % 2)[..., None] * np.array([40, 60, 210]),
             (xx / 96 * 220)[..., None] * np.array([1.0, 1.0, 0.2])]
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 60, size=3) + kinds[i % 4] + rng.normal(0, 12, size=(72, 96, 3))
        path = folder / f"image-{i:05d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def child_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def embedded_count(workspace: Path) -> int:
    """Embedding rows committed so far (read-only, from outside the writing process)."""
    database = workspace / "catalogue.db"
    if not database.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            return int(db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _wait(process: subprocess.Popen, ready, timeout: float = 120) -> None:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.01)


def _kill(process: subprocess.Popen) -> bool:  # type: ignore[type-arg]
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    return killed


def embed_command(folder: Path, workspace: Path) -> list[str]:
    return [sys.executable, "-m", "imgcluster.cli", "embed", str(folder), "--workspace", str(workspace),
            "--model", MODEL, "--batch-size", "2", "--commit-every", "4", "--workers", "1", "--json"]


def kill_embedding(folder: Path, workspace: Path, kills: int, rng: np.random.Generator,
                   start_delay: float = 4.0, progress_delay: float = 0.6) -> list[Kill]:
    """Start `imgcluster embed` ``kills`` times, SIGKILL each at a random point; then let it finish."""
    done: list[Kill] = []
    for round_ in range(1, kills + 1):
        before = embedded_count(workspace)
        process = subprocess.Popen(embed_command(folder, workspace), env=child_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if round_ % 2:
            trigger, delay = "start", float(rng.uniform(0, start_delay))
        else:
            trigger, delay = "progress", float(rng.uniform(0, progress_delay))
            _wait(process, lambda before=before: embedded_count(workspace) > before)
        time.sleep(delay)
        at_kill = embedded_count(workspace)
        done.append(Kill(round_, trigger, delay, before, at_kill, _kill(process)))
    finished = subprocess.run(check=False, args=embed_command(folder, workspace), env=child_env(), capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"the resumed embed failed: {finished.stderr[-2000:]}")
    return done


@dataclass
class EmbeddingCheck:
    images: int
    embedded: int
    duplicates: int
    missing: int
    max_difference: float
    integrity_ok: bool
    orphan_shards: int

    @property
    def ok(self) -> bool:
        return (self.integrity_ok and self.duplicates == 0 and self.missing == 0 and self.embedded == self.images
                and self.max_difference <= 1e-5)


def check_embeddings(folder: Path, workspace: Path, reference_workspace: Path) -> EmbeddingCheck:
    """Compare the killed-and-resumed workspace with an uninterrupted embedding of the same images."""
    ws = imgcluster.open_workspace(workspace=workspace)
    try:
        records = ws.images(status="ok")
        model_id = ws.models()[0]["model_id"]
        hashes = sorted({r.content_hash for r in records if r.content_hash})
        rows = ws.embedding_rows(model_id)
        counts: dict[str, int] = {}
        for content_hash, _, _ in rows:
            counts[content_hash] = counts.get(content_hash, 0) + 1
        duplicates = sum(c > 1 for c in counts.values())
        missing = sum(h not in counts for h in hashes)
        stored = ws.load_embeddings(model_id, hashes)
        integrity = ws.integrity_ok()
        orphans = len(ws.unreferenced_shards(model_id))
    finally:
        ws.close()
    # The uninterrupted run: the same command, in a fresh workspace, never killed.
    subprocess.run(check=True, args=embed_command(folder, reference_workspace), env=child_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = imgcluster.open_workspace(workspace=reference_workspace)
    try:
        expected = reference.load_embeddings(model_id, hashes)
    finally:
        reference.close()
    return EmbeddingCheck(len(hashes), len(counts), duplicates, missing,
                          float(np.abs(stored - expected).max()) if len(hashes) else 0.0, integrity,
                          orphans)


def cluster_command(folder: Path, workspace: Path, key: str, fast: bool = True) -> list[str]:
    return [sys.executable, "-m", "imgcluster.cli", "cluster", str(folder), "--workspace", str(workspace),
            "--model", MODEL, "--run-key", key, "--json", *(FAST_CLUSTER if fast else [])]


def kill_clustering(folder: Path, workspace: Path, kills: int, rng: np.random.Generator, *,
                    fast: bool = True, start_delay: float = 8.0, writing_delay: float = 0.3) -> list[tuple[str, str]]:
    """Kill `imgcluster cluster --run-key crash` ``kills`` times (embeddings already cached); after each
    kill check that the runs before are intact and no run "crash" is visible. A round whose process
    finished before the signal is tried again (``FINISHED_FIRST_RETRIES`` times). Returns (kill point,
    what the killed run had written) per kill; raises AssertionError on a broken promise."""
    before = {r.key: imgcluster.load_run(r.key, workspace=workspace) for r in
              imgcluster.list_runs(workspace=workspace)}
    folder_of_run = workspace / "runs" / "crash"
    done = []
    for round_ in range(1, kills + 1):
        # A run of a few images can be written, and its process gone, before the signal: that run
        # is whole (checked, then removed) and the round is tried again, at once after the first file.
        window = start_delay
        for attempt in range(FINISHED_FIRST_RETRIES + 1):
            started = time.time()
            process = subprocess.Popen(cluster_command(folder, workspace, "crash", fast), env=child_env(),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if round_ % 2:
                delay = float(rng.uniform(0, window))
                time.sleep(delay)
                point = f"{delay:.2f} s after start"
            else:
                _wait(process, lambda since=started: _written_since(folder_of_run, since))
                delay = float(rng.uniform(0, writing_delay)) if attempt == 0 else 0.0
                time.sleep(delay)
                point = f"{delay:.2f} s after it began writing the run"
            killed = _kill(process)
            written = sorted(str(p.relative_to(folder_of_run)) for p in folder_of_run.rglob("*") if p.is_file()) \
                if folder_of_run.exists() else []
            if killed:
                break
            assert process.returncode == 0, f"the cluster command failed (exit {process.returncode})"
            _remove_whole_run(workspace)
            window = min(window, 0.8 * (time.time() - started))  # the next try lands within a run's time
        tries = f" (try {attempt + 1}: the earlier ones finished first, their runs whole)" if attempt else ""
        done.append((point + tries if killed else point + " (finished first every time)", ", ".join(written) or "nothing"))
        listed = CliRunner().invoke(app, ["runs", "list", "--workspace", str(workspace), "--json"])
        assert listed.exit_code == 0, listed.output
        keys = [r["key"] for r in json.loads(listed.stdout)]
        if "crash" in keys:
            # The kill landed after the run's last transaction (the process was exiting): a whole run
            # may be shown, a half one never. Check it is whole, then remove it for the next round.
            _remove_whole_run(workspace)
            done[-1] = (done[-1][0] + " (after the run was saved: it is whole)", done[-1][1])
            keys.remove("crash")
        assert sorted(keys) == sorted(before), f"runs list shows {keys} after a kill; expected {sorted(before)}"
        try:
            imgcluster.load_run("crash", workspace=workspace)
            raise AssertionError("a killed run is visible to load_run")
        except imgcluster.RunNotFound:
            pass
        for key, run in before.items():
            again = imgcluster.load_run(key, workspace=workspace)
            assert np.array_equal(again.assignments.clusters, run.assignments.clusters), key
            assert np.array_equal(again.assignments.image_ids, run.assignments.image_ids), key
            assert again.outputs.keys() == run.outputs.keys(), key
        ws = imgcluster.open_workspace(workspace=workspace)
        try:
            assert ws.integrity_ok()
        finally:
            ws.close()
    return done


# Tries of a round whose process finished before the signal came (then it is killed as soon as it
# writes its first file).
FINISHED_FIRST_RETRIES = 4


def _remove_whole_run(workspace: Path) -> None:
    """Check that the run "crash", shown after its process ended, is whole; then delete it."""
    finished = imgcluster.load_run("crash", workspace=workspace)
    assert set(finished.outputs) == {"csv", "parquet", "report"}, finished.outputs
    assert len(finished.images) == len(finished.assignments.image_ids) > 0
    imgcluster.delete_run("crash", workspace=workspace)


def _written_since(folder: Path, since: float) -> bool:
    """Whether this round's process has begun writing files of the run (any file newer than ``since``)."""
    try:
        return any(p.stat().st_mtime >= since for p in folder.rglob("*") if p.is_file())
    except OSError:  # a temporary file renamed away while we looked
        return False


def rerun_cluster(folder: Path, workspace: Path, fast: bool = True) -> imgcluster.Run:
    """The killed command again, uninterrupted: it must succeed over whatever the kills left."""
    finished = subprocess.run(check=False, args=cluster_command(folder, workspace, "crash", fast), env=child_env(),
                              capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"the rerun of the killed cluster command failed: {finished.stderr[-2000:]}")
    return imgcluster.load_run("crash", workspace=workspace)


@dataclass
class ChangingCheck:
    rounds: int
    rewrites: int
    stored: int            # vectors in the workspace at the end
    unknown: int           # stored under a hash of no content ever written (a torn read that decoded)
    wrong: int             # stored vector is not the embedding of the bytes its hash names
    min_cosine: float
    current_missing: int   # files whose content as it is now has no vector after a final quiet run

    @property
    def ok(self) -> bool:
        return self.unknown == 0 and self.wrong == 0 and self.current_missing == 0


def _rewrite_files(paths: list[Path], contents: list[bytes], known: dict[str, bytes], stop: threading.Event,
                   rng: np.random.Generator) -> int:
    """Until ``stop``: give a random file another of ``contents``, in place or by rename (both
    happen to users' files). Records each content's hash in ``known``."""
    rewrites = 0
    while not stop.is_set():
        path, data = paths[int(rng.integers(len(paths)))], contents[int(rng.integers(len(contents)))]
        known[hash_bytes(data)] = data
        if rewrites % 2:
            path.write_bytes(data)
        else:
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        rewrites += 1
        time.sleep(float(rng.uniform(0.0, 0.02)))
    return rewrites


def changing_files(folder: Path, workspace: Path, rounds: int, rng: np.random.Generator) -> ChangingCheck:
    """Run `imgcluster embed` ``rounds`` times while a thread rewrites files under it, then once more
    with the files at rest; compare every stored vector with a fresh embedding of its hash's bytes."""
    from imgcluster.embed import load_model
    from imgcluster.embed.runner import normalise

    paths = sorted(folder.glob("*.jpg"))
    contents = [p.read_bytes() for p in paths]
    known = {hash_bytes(data): data for data in contents}
    rewrites = 0
    for _ in range(rounds):
        stop = threading.Event()
        counted: list[int] = []
        writer = threading.Thread(target=lambda: counted.append(_rewrite_files(paths, contents, known, stop, rng)))
        writer.start()
        try:
            subprocess.run(check=False, args=embed_command(folder, workspace), env=child_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        finally:
            stop.set()
            writer.join()
        rewrites += counted[0]
    finished = subprocess.run(check=False, args=embed_command(folder, workspace), env=child_env(),
                              capture_output=True, text=True, timeout=600)
    if finished.returncode != 0:
        raise RuntimeError(f"the quiet embed after the changes failed: {finished.stderr[-2000:]}")
    embedder = load_model(MODEL, device="cpu")
    ws = imgcluster.open_workspace(workspace=workspace)
    try:
        stored_hashes = sorted({h for h, _, _ in ws.embedding_rows(embedder.model_id)})
        stored = ws.load_embeddings(embedder.model_id, stored_hashes)
        current = {hash_bytes(p.read_bytes()) for p in paths}
    finally:
        ws.close()
    unknown = [h for h in stored_hashes if h not in known]
    checked = [i for i, h in enumerate(stored_hashes) if h in known]
    pixels = np.stack([embedder.preprocess(load_rgb(known[stored_hashes[i]], min_side=embedder.input_size))
                       for i in checked])
    fresh = normalise(embedder.embed(pixels))
    cosines = np.sum(fresh * stored[checked], axis=1)
    return ChangingCheck(rounds, rewrites, len(stored_hashes), len(unknown), int((cosines < 0.999).sum()),
                         float(cosines.min()) if len(cosines) else 1.0, len(current - set(stored_hashes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--cluster-kills", type=int, default=6)
    parser.add_argument("--changing", type=int, default=4, help="embed runs with files being rewritten under them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defaults", action="store_true", help="cluster with the default recipe (umap + hdbscan "
                                                                 "+ naming) instead of the fast one")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, workspace = root / "images", root / "workspace"
        write_images(folder, args.images, args.seed)
        started = time.perf_counter()
        kills = kill_embedding(folder, workspace, args.kills, rng)
        print(f"embed: {args.images} images, {len(kills)} SIGKILLs ({time.perf_counter() - started:.0f} s)")
        for kill in kills:
            print(kill.line())
        result = check_embeddings(folder, workspace, root / "reference")
        print(f"  after resuming: {result.embedded}/{result.images} images embedded, {result.duplicates} with "
              f"more than one row, {result.missing} missing, max |difference| to an uninterrupted run "
              f"{result.max_difference:.2e}, integrity_check {'ok' if result.integrity_ok else 'FAILED'}, "
              f"{result.orphan_shards} orphan shard files  ->  {'PASS' if result.ok else 'FAIL'}")

        first = subprocess.run(check=False, args=cluster_command(folder, workspace, "before", not args.defaults), env=child_env(),
                               capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        started = time.perf_counter()
        points = kill_clustering(folder, workspace, args.cluster_kills, rng, fast=not args.defaults)
        print(f"cluster: {len(points)} SIGKILLs with embeddings cached ({time.perf_counter() - started:.0f} s); "
              "after each: run 'before' intact and listed, no run 'crash' in runs list or load_run, "
              "integrity_check ok")
        for point, written in points:
            print(f"  killed {point}; runs/crash/ held: {written}")
        rerun = rerun_cluster(folder, workspace, not args.defaults)
        print(f"  rerun: run {rerun.key} saved with {rerun.record.n_images} images, {rerun.record.n_clusters} "
              f"clusters; runs: {[r.key for r in imgcluster.list_runs(workspace=workspace)]}  ->  PASS")

        if args.changing:
            changing_folder = root / "changing"
            write_images(changing_folder, min(args.images, 120), args.seed + 1)
            started = time.perf_counter()
            check = changing_files(changing_folder, root / "changing-workspace", args.changing, rng)
            print(f"changing files: {check.rounds} embed runs while {check.rewrites} rewrites landed "
                  f"({time.perf_counter() - started:.0f} s); {check.stored} vectors stored, {check.wrong} not the "
                  f"embedding of the bytes their hash names (min cosine {check.min_cosine:.5f}), {check.unknown} "
                  f"under an unknown hash; after a quiet run {check.current_missing} files lack a vector for their "
                  f"content  ->  {'PASS' if check.ok else 'FAIL'}")
    print(f"command: python bench/crash.py --images {args.images} --kills {args.kills} "
          f"--cluster-kills {args.cluster_kills} --changing {args.changing} --seed {args.seed}"
          f"{' --defaults' if args.defaults else ''}")


if __name__ == "__main__":
    main()
