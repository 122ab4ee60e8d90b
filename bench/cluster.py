"""Is imgcluster's default clustering faster than the seed's recipe, without losing quality?

Side by side, in one run, on N synthetic 512-d unit vectors with known clusters of unequal sizes
and 10% background noise (default N = 150,000, the iFunny article's collection size):
- baseline: the plain umap-learn + hdbscan recipe with the `ifunny` preset's settings
  (UMAP n_neighbors=70, n_epochs=300, min_dist=0.03, n_components=5, random_state=35;
  HDBSCAN min_cluster_size=1000, alpha=2.0, leaf selection, prediction_data=True);
- imgcluster's default: `imgcluster.fit_clusters` with default settings (UMAP on a sample, then auto
  mode: HDBSCAN settings and k-means scored on that sample, the best kept; the rest filed by the
  k-NN predictor) — plus the 2-D map, which the baseline does not make.
Each method runs in its own child process so its wall time and peak RSS are its own. Prints both
times, the speed-up, ARI/NMI against the truth (background noise is one more label), peak RSS, and
the mean pairwise ARI of the default over several seeds.

    python bench/cluster.py [--n 150000] [--seeds 5] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import resource
import sys
import time

import numpy as np
from synthetic import synthetic  # bench/synthetic.py; bench/update.py imports it from here


def run_baseline(x: np.ndarray) -> np.ndarray:
    import hdbscan
    import umap

    embedding = umap.UMAP(n_neighbors=70, n_epochs=300, min_dist=0.03, n_components=5,
                          random_state=35).fit_transform(x)
    model = hdbscan.HDBSCAN(min_cluster_size=1000, alpha=2.0, cluster_selection_method="leaf",
                            prediction_data=True).fit(embedding)
    return model.labels_


def run_default(x: np.ndarray, seed: int = 0) -> np.ndarray:
    import imgcluster

    _, clustering = imgcluster.fit_clusters(x, imgcluster.ReduceConfig(seed=seed), imgcluster.ClusterConfig(seed=seed))
    return clustering.labels


def _child(name: str, n: int, seed: int, queue: mp.Queue) -> None:
    x, _ = synthetic(n)
    started = time.perf_counter()
    labels = run_baseline(x) if name == "baseline" else run_default(x, seed)
    seconds = time.perf_counter() - started
    peak_mib = peak_rss_mib()
    queue.put({"seconds": seconds, "peak_rss_mib": peak_mib, "labels": labels.tolist()})
    queue.close()
    queue.join_thread()
    # joblib's reusable loky workers (started by hdbscan) keep a normal exit waiting forever.
    os._exit(0)


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not getrusage: Linux carries ru_maxrss over from the parent
    across exec, so a spawned child would report the parent's peak (here, the data generation)."""
    try:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, n: int, seed: int = 0) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, n, seed, queue))
    process.start()
    result = queue.get()
    process.join()
    result["labels"] = np.asarray(result["labels"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150_000)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the default's stability figure")
    parser.add_argument("--skip-baseline", action="store_true", help="time only imgcluster's default")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    _, truth = synthetic(args.n)
    print(f"{args.n:,} synthetic 512-d unit vectors, 20 clusters (sizes {np.bincount(truth[truth >= 0]).max():,}"
          f" to {np.bincount(truth[truth >= 0]).min():,}), {np.mean(truth < 0):.0%} background noise; "
          f"{os.cpu_count()} CPUs", flush=True)
    methods = ([] if args.skip_baseline else ["baseline"]) + ["default"]
    results = {}
    for name in methods:
        result = measure(name, args.n)
        labels = result["labels"]
        result.update(ari=adjusted_rand_score(truth, labels), nmi=normalized_mutual_info_score(truth, labels),
                      clusters=int(len(set(labels.tolist()) - {-1})), noise=float(np.mean(labels < 0)))
        results[name] = result
        print(f"{name:>9}: {result['seconds']:8.1f} s  ARI {result['ari']:.3f}  NMI {result['nmi']:.3f}  "
              f"{result['clusters']} clusters, {result['noise']:.0%} noise, peak RSS {result['peak_rss_mib']:,.0f} MiB",
              flush=True)
    if "baseline" in results:
        print(f"speed-up of the default over the ifunny recipe: "
              f"{results['baseline']['seconds'] / results['default']['seconds']:.1f}x")
    runs = [results["default"]["labels"]] + [measure("default", args.n, seed)["labels"] for seed in range(1, args.seeds)]
    pairwise = [adjusted_rand_score(a, b) for a, b in itertools.combinations(runs, 2)]
    if pairwise:
        print(f"stability of the default over {len(runs)} seeds: mean pairwise ARI {np.mean(pairwise):.3f} "
              f"(min {np.min(pairwise):.3f})")
    print("command: python bench/cluster.py " + " ".join(sys.argv[1:]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({name: {k: v for k, v in r.items() if k != "labels"} for name, r in results.items()}
                      | {"stability_pairwise_ari": pairwise}, handle, indent=2)


if __name__ == "__main__":
    main()
