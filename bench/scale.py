"""Does imgcluster's default clustering handle 1M images on this machine (< 30 min, < 4 GiB peak RSS)?

For each size N (default 100k, 300k, 1M): the synthetic 512-d unit vectors of bench/cluster.py (20
clusters of unequal sizes, 10% background noise) written once as float16 ``.npy`` shards of 10,000
rows under ``--data`` (outside git; reused by later runs), then clustered in a fresh process by the
library's default path, ``imgcluster.fit_clusters`` on ``imgcluster.ShardedVectors`` (UMAP + HDBSCAN
on a 15k sample, every other image filed by the predictor while the shards are read in batches,
plus the 2-D map for every image). Prints per N: wall time, peak RSS, each stage's time and peak,
clusters found and ARI/NMI against the truth; then the growth exponents of time and RSS (slope of
a log-log least-squares fit over the sizes) and its own command line.

    python bench/scale.py [--sizes 100000,300000,1000000] [--variant standard|long-tail] [--data DIR] [--method M]
                          [--fit-sample S] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cluster import recall_line
from synthetic import write_shards

GIB = 2**30


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes (VmHWM: peak resident set, VmRSS: current)."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1]) * 1024


def _reset_peak() -> bool:
    """Restart VmHWM from the current RSS (Linux >= 4.0), so each stage's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _child(folder: str, labels_path: str, fit_sample: int | None, method: str | None, queue: mp.Queue) -> None:
    import imgcluster

    stages: dict[str, dict[str, float]] = {}
    current = ["start"]
    before = {"rss": _status("VmRSS")}
    per_stage = _reset_peak()

    def progress(stage: str, done: int, total: int) -> None:
        if stage != current[0]:
            stages[current[0]] = {"peak_rss": _status("VmHWM")}
            if per_stage:
                _reset_peak()
            current[0] = stage

    started = time.perf_counter()
    vectors = imgcluster.ShardedVectors.from_folder(folder, "shard-*.npy")
    timings: dict[str, float] = {}
    config = imgcluster.ReduceConfig() if fit_sample is None else imgcluster.ReduceConfig(fit_sample=fit_sample)
    cluster_config = imgcluster.ClusterConfig() if method is None else imgcluster.ClusterConfig(method=method)
    _, clustering = imgcluster.fit_clusters(vectors, config, cluster_config, timings=timings, progress=progress)
    seconds = time.perf_counter() - started
    stages[current[0]] = {"peak_rss": _status("VmHWM")}
    np.save(labels_path, clustering.labels)
    for name, value in timings.items():
        stages.setdefault({"file_rest": "file"}.get(name, name), {})["seconds"] = value
    queue.put({"seconds": seconds, "peak_rss": max(s.get("peak_rss", 0) for s in stages.values()),
               "rss_after_import": before["rss"], "stages": stages, "per_stage_peaks": per_stage,
               "params": {k: v for k, v in clustering.params.items() if isinstance(v, (int, float, str))},
               "shards": len(vectors.paths), "stored": vectors.stored_dtype})
    queue.close()
    queue.join_thread()
    os._exit(0)  # joblib's reusable workers would keep a normal exit waiting


def measure(folder: Path, fit_sample: int | None = None, method: str | None = None) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    labels_path = folder / "labels.npy"
    process = context.Process(target=_child, args=(str(folder), str(labels_path), fit_sample, method, queue))
    process.start()
    result = queue.get()
    process.join()
    result["labels"] = np.load(labels_path)
    labels_path.unlink()
    return result


def exponent(sizes: list[int], values: list[float]) -> float:
    """Slope of log(value) against log(N): value grows as N ** slope."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated numbers of images")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "imgcluster-bench-scale"),
                        help="where the float16 shards are written once and reused")
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--fit-sample", type=int, help="ReduceConfig.fit_sample; unset keeps the default (15,000)")
    parser.add_argument("--method", help="ClusterConfig.method; unset keeps the library's default")
    parser.add_argument("--variant", choices=["standard", "long-tail"], default="standard",
                        help="long-tail: 20 large and 20 small (0.1-0.5%%) clusters with bridges (bench/synthetic.py)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    sizes = [int(s) for s in args.sizes.split(",")]
    described = ("20 clusters" if args.variant == "standard"
                 else "long tail: 20 large and 20 small clusters, 15% bridged")
    print(f"synthetic 512-d unit vectors (bench/synthetic.py: {described}, 10% background noise) as float16 "
          f"shards of {args.shard_rows:,} rows in {args.data}; {os.cpu_count()} CPUs; "
          f"1-min load average at start {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for n in sizes:
        folder = Path(args.data) / (f"n{n}" if args.variant == "standard" else f"{args.variant}-n{n}")
        started = time.perf_counter()
        existed = (folder / "meta.json").exists()
        _, truth = write_shards(n, folder, args.shard_rows, variant=args.variant)
        made = None if existed else time.perf_counter() - started
        result = measure(folder, args.fit_sample, args.method)
        labels = result.pop("labels")
        result.update(n=n, shards_written_s=made, ari=adjusted_rand_score(truth, labels),
                      nmi=normalized_mutual_info_score(truth, labels),
                      clusters=len(set(np.unique(labels).tolist()) - {-1}), noise=float(np.mean(labels < 0)))
        results.append(result)
        stages = "  ".join(f"{name} {s.get('seconds', 0):.1f}s/{s['peak_rss'] / GIB:.2f}G"
                           if name != "start" else f"imports+open {s['peak_rss'] / GIB:.2f}G"
                           for name, s in result["stages"].items())
        print(f"N={n:>9,} ({result['params']['method']}, fit on {result['params'].get('fit_sample', n):,}): "
              f"{result['seconds']:7.1f} s, peak RSS {result['peak_rss'] / GIB:.2f} GiB, "
              f"{result['clusters']} clusters, {result['noise']:.0%} unclustered, ARI {result['ari']:.3f}, "
              f"NMI {result['nmi']:.3f}  [{stages}]  "
              f"(shards {'reused' if made is None else f'written in {made:.0f} s'})", flush=True)
        if args.variant == "long-tail":
            print(f"    {recall_line(truth, labels)}", flush=True)
    print()
    print("| N | method | wall time | peak RSS | clusters | unclustered | ARI | NMI |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['n']:,} | {r['params']['method']} | {r['seconds']:.1f} s | {r['peak_rss'] / GIB:.2f} GiB | "
              f"{r['clusters']} | {r['noise']:.1%} | {r['ari']:.3f} | {r['nmi']:.3f} |")
    if len(results) >= 2:
        ns = [r["n"] for r in results]
        time_exp = exponent(ns, [r["seconds"] for r in results])
        rss_exp = exponent(ns, [r["peak_rss"] for r in results])
        print(f"\ngrowth exponents (log-log fit over {len(ns)} sizes): time ~ N^{time_exp:.2f}, "
              f"peak RSS ~ N^{rss_exp:.2f}")
        # The fit on the sample costs the same at every N, so a line says more than the exponent.
        per_image, fixed = np.polyfit(ns, [r["seconds"] for r in results], 1)
        rss_per_image, rss_fixed = np.polyfit(ns, [r["peak_rss"] for r in results], 1)
        print(f"least-squares lines: time = {fixed:.1f} s + {per_image * 1e6:.1f} us x N; "
              f"peak RSS = {rss_fixed / GIB:.2f} GiB + {rss_per_image:.0f} B x N")
    big = results[-1]
    print(f"targets at N={big['n']:,}: wall time {big['seconds'] / 60:.1f} min (< 30: "
          f"{'met' if big['seconds'] < 1800 else 'MISSED'}), peak RSS {big['peak_rss'] / GIB:.2f} GiB "
          f"(< 4: {'met' if big['peak_rss'] < 4 * GIB else 'MISSED'})")
    print("command: python bench/scale.py " + " ".join(sys.argv[1:]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
