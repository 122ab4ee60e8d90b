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
    python bench/cluster.py --variant long-tail [--n 150000] [--baseline-labels FILE.npz] [--min-cluster-size 300]

``--variant long-tail`` (issue 25): 20 large clusters plus 20 small ones of 0.1-0.5% of the
collection, 15% of every cluster's points pulled part-way towards another cluster, 10% noise
(``bench/synthetic.py: long_tail``); it also prints each true cluster's best Jaccard with a found
cluster, and how many clusters of at least 0.2% reach 0.8. The recipe takes ~8 minutes at 150k on
idle cores: ``--baseline-labels FILE.npz`` stores its labels, time and peak RSS there on the first
run and reuses them afterwards (say so when reporting).
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
from synthetic import long_tail, synthetic  # bench/synthetic.py; bench/update.py imports it from here

VARIANTS = {"standard": synthetic, "long-tail": long_tail}


def run_baseline(x: np.ndarray) -> np.ndarray:
    import hdbscan
    import umap

    embedding = umap.UMAP(n_neighbors=70, n_epochs=300, min_dist=0.03, n_components=5,
                          random_state=35).fit_transform(x)
    model = hdbscan.HDBSCAN(min_cluster_size=1000, alpha=2.0, cluster_selection_method="leaf",
                            prediction_data=True).fit(embedding)
    return model.labels_


def run_default(x: np.ndarray, seed: int = 0, min_cluster_size: int | None = None) -> np.ndarray:
    import imgcluster

    _, clustering = imgcluster.fit_clusters(x, imgcluster.ReduceConfig(seed=seed),
                                            imgcluster.ClusterConfig(seed=seed, min_cluster_size=min_cluster_size))
    return clustering.labels


def _child(name: str, n: int, seed: int, variant: str, queue: mp.Queue, min_cluster_size: int | None = None) -> None:
    x, _ = VARIANTS[variant](n)
    started = time.perf_counter()
    labels = run_baseline(x) if name == "baseline" else run_default(x, seed, min_cluster_size)
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


def measure(name: str, n: int, seed: int = 0, variant: str = "standard", min_cluster_size: int | None = None) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, n, seed, variant, queue, min_cluster_size))
    process.start()
    result = queue.get()
    process.join()
    result["labels"] = np.asarray(result["labels"])
    return result


def best_jaccard(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each true cluster (0..c-1), the highest Jaccard index with any found cluster (noise excluded)."""
    from scipy import sparse

    found = labels >= 0
    t, f = truth[found & (truth >= 0)], labels[found & (truth >= 0)]
    sizes_true = np.bincount(truth[truth >= 0])
    sizes_found = np.bincount(labels[found], minlength=int(labels.max()) + 1 if found.any() else 0)
    if not len(t):
        return np.zeros(len(sizes_true))
    both = sparse.coo_matrix((np.ones(len(t)), (t, f)), shape=(len(sizes_true), len(sizes_found))).tocsr()
    both.sum_duplicates()
    best = np.zeros(len(sizes_true))
    rows, cols = both.nonzero()
    inter = np.asarray(both[rows, cols]).ravel()
    jaccard = inter / (sizes_true[rows] + sizes_found[cols] - inter)
    np.maximum.at(best, rows, jaccard)
    return best


def recall_line(truth: np.ndarray, labels: np.ndarray, share: float = 0.002, bar: float = 0.8) -> str:
    """How many true clusters of at least ``share`` of the collection reach Jaccard ``bar``, and the
    best Jaccard of each (smallest clusters first)."""
    best = best_jaccard(truth, labels)
    sizes = np.bincount(truth[truth >= 0])
    counted = sizes >= share * len(truth)
    order = np.argsort(sizes)
    per_cluster = " ".join(f"{sizes[c]}:{best[c]:.2f}" for c in order)
    return (f"{int((best[counted] >= bar).sum())}/{int(counted.sum())} true clusters of >= {share:.1%} found with "
            f"Jaccard >= {bar} (min {best[counted].min():.2f}); all {len(sizes)}: {int((best >= bar).sum())}. "
            f"Best Jaccard per true cluster (size:Jaccard, smallest first): {per_cluster}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150_000)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="standard")
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the default's stability figure")
    parser.add_argument("--skip-baseline", action="store_true", help="time only imgcluster's default")
    parser.add_argument("--only-baseline", action="store_true", help="time only the recipe")
    parser.add_argument("--baseline-labels", help="an .npz holding the recipe's result: reused when there, "
                                                  "written when not")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--min-cluster-size", type=int, default=None,
                        help="give imgcluster's default this minimum (images, whole collection), as --min-cluster-size does")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    _, truth = VARIANTS[args.variant](args.n)
    sizes = np.bincount(truth[truth >= 0])
    print(f"{args.n:,} synthetic 512-d unit vectors ({args.variant}), {len(sizes)} clusters (sizes {sizes.max():,}"
          f" to {sizes.min():,}), {np.mean(truth < 0):.0%} background noise; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    methods = ([] if args.skip_baseline else ["baseline"]) + ([] if args.only_baseline else ["default"])
    results = {}
    for name in methods:
        result = (_baseline(args) if name == "baseline"
                  else measure(name, args.n, variant=args.variant, min_cluster_size=args.min_cluster_size))
        labels = result["labels"]
        result.update(ari=adjusted_rand_score(truth, labels), nmi=normalized_mutual_info_score(truth, labels),
                      clusters=int(len(set(labels.tolist()) - {-1})), noise=float(np.mean(labels < 0)))
        results[name] = result
        print(f"{name:>9}: {result['seconds']:8.1f} s  ARI {result['ari']:.3f}  NMI {result['nmi']:.3f}  "
              f"{result['clusters']} clusters, {result['noise']:.0%} noise, peak RSS {result['peak_rss_mib']:,.0f} MiB"
              + (" (reused)" if result.get("reused") else ""), flush=True)
        if args.variant == "long-tail":
            print(f"{'':>11}{recall_line(truth, labels)}", flush=True)
    if "baseline" in results and "default" in results:
        print(f"speed-up of the default over the ifunny recipe: "
              f"{results['baseline']['seconds'] / results['default']['seconds']:.1f}x; peak RSS "
              f"{results['default']['peak_rss_mib'] / results['baseline']['peak_rss_mib']:.2f} of the recipe's")
    pairwise: list[float] = []
    if "default" in results:
        runs = [results["default"]["labels"]] + [measure("default", args.n, seed, args.variant,
                                                         args.min_cluster_size)["labels"]
                                                 for seed in range(1, args.seeds)]
        pairwise = [adjusted_rand_score(a, b) for a, b in itertools.combinations(runs, 2)]
        if pairwise:
            print(f"stability of the default over {len(runs)} seeds: mean pairwise ARI {np.mean(pairwise):.3f} "
                  f"(min {np.min(pairwise):.3f})")
    print("command: python bench/cluster.py " + " ".join(sys.argv[1:]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({name: {k: v for k, v in r.items() if k != "labels"} for name, r in results.items()}
                      | {"stability_pairwise_ari": pairwise}, handle, indent=2)


def _baseline(args: argparse.Namespace) -> dict:
    """The recipe's result: measured now, or read from ``--baseline-labels`` when that file is there."""
    path = args.baseline_labels
    if path and os.path.exists(path):
        stored = np.load(path)
        if int(stored["n"]) == args.n and str(stored["variant"]) == args.variant:
            return {"labels": stored["labels"], "seconds": float(stored["seconds"]),
                    "peak_rss_mib": float(stored["peak_rss_mib"]), "reused": True}
    result = measure("baseline", args.n, variant=args.variant)
    if path:
        np.savez(path, labels=result["labels"], seconds=result["seconds"], peak_rss_mib=result["peak_rss_mib"],
                 n=args.n, variant=args.variant)
    return result


if __name__ == "__main__":
    main()
