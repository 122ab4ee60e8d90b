"""Does the whole `imgcluster cluster` command handle a large collection within 4 GiB on this machine?

bench/scale.py times the clustering stage alone on shards. This one runs the command a user runs,
`imgcluster cluster FOLDER --model efficientnet-lite0`, in a fresh process, on a folder of N real
image files (distinct 8x8 BMPs, so that scanning costs what it costs per file) whose embeddings are
already in the workspace, as `imgcluster embed` (or `--engine ray`) would have left them: float16
shards of 256 rows. The vectors are bench/synthetic.py's at the model's width, 1,280-d (20
clusters of unequal sizes, 10% background noise), so the run's clusters can be scored against the
truth. Everything after embedding is measured: the re-scan, the embeddings read from the shards,
UMAP + clustering on the sample, filing the rest, the predictor's index, naming, the report and
the tables. Prints per N: wall time, the child's peak RSS, the run's own stage timings with the
peak RSS sampled in each (stages placed end to end before the process's exit), ARI/NMI;
then growth exponents and its own command line.

    python bench/scale_job.py [--sizes 100000,300000,1000000] [--data DIR] [--json FILE]

The folders (files, shards, workspace) are made once under --data (outside git) and reused; each
measured run gets its own run key. Making 1M files takes a few minutes and ~5 GB of disk.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scale import exponent
from synthetic import write_shards

GIB = 2**30
DIM = 1280          # efficientnet-lite0's embedding width
SHARD_ROWS = 256    # EmbedConfig.commit_every: what `imgcluster embed` writes per batch
FILES_PER_DIR = 10_000


def bmp_bytes(i: int) -> bytes:
    """A valid 8x8 24-bit BMP (the scan's minimum side) whose first pixels spell ``i``: every file
    differs, so none is a duplicate of another."""
    side = 8
    body = i.to_bytes(6, "little") + bytes(side * side * 3 - 6)  # rows of 24 bytes need no padding
    header = b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, len(body), 2835, 2835, 0, 0)
    return header + info + body


def image_path(folder: Path, i: int) -> Path:
    return folder / f"part-{i // FILES_PER_DIR:04d}" / f"img-{i:07d}.bmp"


def make_files(n: int, folder: Path) -> float | None:
    marker = folder / ".files-made"
    if marker.exists() and int(marker.read_text()) == n:
        return None
    started = time.perf_counter()
    for i in range(n):
        path = image_path(folder, i)
        if i % FILES_PER_DIR == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bmp_bytes(i))
    marker.write_text(str(n))
    return time.perf_counter() - started


def store_embeddings(n: int, folder: Path, vectors_dir: Path) -> float | None:
    """Scan the folder into its workspace and store row i of the synthetic shards as image i's
    embedding, through the store's own batch writes (as the embedding step would)."""
    marker = folder / ".imgcluster" / ".bench-embedded"
    if marker.exists() and int(marker.read_text()) == n:
        return None
    import imgcluster
    from imgcluster.embed import load_model

    started = time.perf_counter()
    model = load_model("efficientnet-lite0", device="cpu")
    ws = imgcluster.open_workspace(folder)
    try:
        ws.lock()
        found = imgcluster.scan(folder, workspace=ws)
        hash_of = {r.path: r.content_hash for r in found.images}
        hashes = [hash_of[str(image_path(folder, i))] for i in range(n)]
        ws.register_model(model.model_id, model.name, model.dim, model.describe())
        stored = imgcluster.ShardedVectors.from_folder(vectors_dir, "shard-*.npy")
        for start, block in stored.batches(SHARD_ROWS):
            ws.save_batch(model.model_id, hashes[start:start + len(block)], block)
    finally:
        ws.close()
    marker.write_text(str(n))
    return time.perf_counter() - started


def run_command(folder: Path, key: str) -> dict:
    """`imgcluster cluster` in a child process: wall time, peak RSS (from wait4), its output, and its
    RSS sampled every 0.2 s (to see which stage holds the peak)."""
    import threading

    command = [sys.executable, "-m", "imgcluster.cli", "cluster", str(folder), "--model", "efficientnet-lite0",
               "--run-key", key]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[tuple[float, int]] = []

    def sample() -> None:
        status = Path(f"/proc/{child.pid}/status")
        while child.returncode is None:
            try:
                rss = next(line for line in status.read_text().splitlines() if line.startswith("VmRSS"))
                samples.append((time.perf_counter() - started, int(rss.split()[1]) * 1024))
            except (OSError, StopIteration):
                break
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{output[-3000:]}")
    return {"seconds": seconds, "peak_rss": usage.ru_maxrss * 1024, "output": output, "command": command,
            "rss_samples": samples}


def stage_peaks(samples: list[tuple[float, int]], timings: dict[str, float], seconds: float) -> dict[str, int]:
    """Peak sampled RSS per stage of the run, the stages laid end to end so that the last one ends
    when the process does (process start-up and imports come before the first)."""
    ends = seconds - np.cumsum(list(timings.values())[::-1])[::-1] + np.asarray(list(timings.values()))
    starts = ends - np.asarray(list(timings.values()))
    peaks = {"start-up": max((r for t, r in samples if t < starts[0]), default=0)}
    for name, begin, end in zip(timings, starts, ends):
        peaks[name] = max((r for t, r in samples if begin <= t < end), default=0)
    return peaks


def score(folder: Path, key: str, n: int, truth: np.ndarray) -> dict:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import imgcluster

    run = imgcluster.load_run(key, path=folder)
    position = {str(image_path(folder, i)): i for i in range(n)}
    order = np.asarray([position[r.path] for r in run.images])
    labels = np.asarray(run.assignments.clusters)
    return {"images": len(run.images), "ari": adjusted_rand_score(truth[order], labels),
            "nmi": normalized_mutual_info_score(truth[order], labels),
            "clusters": run.record.n_clusters, "noise": float(np.mean(labels < 0)),
            "model": run.record.model_name, "timings": run.record.timings,
            "method": run.record.clustering.get("method")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated numbers of images")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "imgcluster-bench-scale-job"))
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--prepare-only", action="store_true", help="make the files and stored embeddings, then stop")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"`imgcluster cluster` on N image files whose {DIM}-d embeddings (bench/synthetic.py: 20 clusters, "
          f"10% noise) are stored as float16 shards of {SHARD_ROWS} rows; {os.cpu_count()} CPUs; 1-min load "
          f"average at start {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for n in sizes:
        base = Path(args.data) / f"n{n}"
        folder = base / "images"
        made = make_files(n, folder)
        _, truth = write_shards(n, base / "vectors", SHARD_ROWS, d=DIM)
        stored = store_embeddings(n, folder, base / "vectors")
        if args.prepare_only:
            print(f"N={n:,}: files {made}, embeddings stored {stored} (None: reused)", flush=True)
            continue
        key = f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
        measured = run_command(folder, key)
        result = {"n": n, "seconds": measured["seconds"], "peak_rss": measured["peak_rss"],
                  "files_made_s": made, "embeddings_stored_s": stored, **score(folder, key, n, truth)}
        peaks = stage_peaks(measured["rss_samples"], result["timings"], measured["seconds"])
        result["stage_peak_rss"] = peaks
        results.append(result)
        stages = "  ".join(f"{name} {value:.1f}s/{peaks[name] / GIB:.2f}G" for name, value in result["timings"].items())
        print(f"N={n:>9,}: {result['seconds']:7.1f} s, peak RSS {result['peak_rss'] / GIB:.2f} GiB, "
              f"{result['clusters']} clusters ({result['method']}), {result['noise']:.0%} unclustered, "
              f"ARI {result['ari']:.3f}, NMI {result['nmi']:.3f}, model {result['model']}  [{stages}]  "
              f"(files {'reused' if made is None else f'made in {made:.0f} s'}, embeddings "
              f"{'reused' if stored is None else f'stored in {stored:.0f} s'})", flush=True)
    if not results:
        return
    print()
    print("| images | wall time | peak RSS | clusters | unclustered | ARI | NMI |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['n']:,} | {r['seconds']:.1f} s | {r['peak_rss'] / GIB:.2f} GiB | {r['clusters']} | "
              f"{r['noise']:.1%} | {r['ari']:.3f} | {r['nmi']:.3f} |")
    if len(results) >= 2:
        ns = [r["n"] for r in results]
        print(f"\ngrowth exponents: time ~ N^{exponent(ns, [r['seconds'] for r in results]):.2f}, "
              f"peak RSS ~ N^{exponent(ns, [r['peak_rss'] for r in results]):.2f}")
        per_image, fixed = np.polyfit(ns, [r["peak_rss"] for r in results], 1)
        print(f"peak RSS = {fixed / GIB:.2f} GiB + {per_image:.0f} B x N")
    big = results[-1]
    print(f"at N={big['n']:,}: {big['seconds'] / 60:.1f} min, peak RSS {big['peak_rss'] / GIB:.2f} GiB "
          f"(< 4 GiB: {'met' if big['peak_rss'] < 4 * GIB else 'MISSED'})")
    print("command: python bench/scale_job.py " + " ".join(sys.argv[1:]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
