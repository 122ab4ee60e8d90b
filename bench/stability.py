"""How long, and how much memory, does the consensus of `imgcluster stability` take on 100,000 images?

The consensus relabels every refit onto the run's clusters (Hungarian matching on their contingency
table) and takes each image's majority vote, so its memory grows with images x refits. The textbook
alternative, a co-association matrix (the share of clusterings that put each pair of images
together), holds images² entries: 37 GiB of float32 at 100,000 images.

On N synthetic 20-d points (default 100,000: 25 Gaussian clusters of unequal sizes and spreads,
some touching), k-means (faiss above 50,000 points, k=30, so seeds cut the touching clusters
differently) gives a reference labeling and R refits (default 5). Then, each in a fresh process so
its peak RSS is its own:
- imgcluster's consensus plus per-cluster stability (`imgcluster.run.compare`) on all N points;
- for scale, the dense co-association matrix of the first --dense-n points (default 10,000).
Prints wall time, peak RSS (VmHWM: Linux carries ru_maxrss over from the parent across exec),
the RSS before the step, the step's own peak allocation (tracemalloc), and its own command line.

    python bench/stability.py [--n 100000] [--repeats 5] [--dense-n 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import tracemalloc

import numpy as np


def synthetic(n: int, d: int = 20, clusters: int = 25, seed: int = 0) -> np.ndarray:
    """``n`` points in ``clusters`` Gaussian blobs of unequal sizes (largest ~10x smallest) and spreads."""
    rng = np.random.default_rng(seed)
    weights = 0.91 ** np.arange(clusters)
    sizes = np.floor(weights / weights.sum() * n).astype(int)
    sizes[0] += n - sizes.sum()
    centres = rng.normal(scale=4.0, size=(clusters, d))
    spreads = rng.uniform(0.5, 1.5, size=clusters)
    truth = np.repeat(np.arange(clusters), sizes)
    return (centres[truth] + rng.normal(size=(n, d)) * spreads[truth, None]).astype(np.float32)


def labelings(x: np.ndarray, repeats: int, k: int) -> np.ndarray:
    """(1 + repeats, n): the reference (seed 0) and the refits (seeds 1..repeats)."""
    import imgcluster

    return np.stack([imgcluster.cluster_points(x, imgcluster.ClusterConfig(k=k, seed=seed)).labels
                     for seed in range(repeats + 1)])


def coassociation(labels: np.ndarray) -> np.ndarray:
    """(n, n) float32: the share of the labelings (m, n) that put each pair of points together."""
    together = np.zeros((labels.shape[1],) * 2, dtype=np.float32)
    for row in labels:
        together += row[:, None] == row[None, :]
    return together / len(labels)


def consensus_step(labels: np.ndarray) -> None:
    from imgcluster.run.compare import cluster_stability, consensus

    consensus(labels[0], list(labels[1:]))
    cluster_stability(labels[0], list(labels[1:]))


def rss_mib(field: str) -> float:
    try:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith(field)).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(step: str, path: str, queue: mp.Queue) -> None:
    import scipy.optimize  # noqa: F401  (imports are not the step's cost)
    import sklearn.metrics  # noqa: F401

    import imgcluster.run.compare  # noqa: F401

    labels = np.load(path)
    work = consensus_step if step == "consensus" else coassociation
    before = rss_mib("VmRSS")
    started = time.perf_counter()
    work(labels)
    seconds = time.perf_counter() - started
    peak = rss_mib("VmHWM")
    tracemalloc.start()  # a second, traced pass: tracing would slow the timed one
    work(labels)
    allocated = tracemalloc.get_traced_memory()[1] / 2**20
    queue.put({"seconds": seconds, "peak_rss_mib": peak, "rss_before_mib": before, "allocated_mib": allocated})


def measure(step: str, labels: np.ndarray) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "labels.npy")
        np.save(path, labels)
        context = mp.get_context("spawn")
        queue = context.Queue()
        process = context.Process(target=_child, args=(step, path, queue))
        process.start()
        result = queue.get()
        process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5, help="refits besides the reference")
    parser.add_argument("--k", type=int, default=30, help="k-means clusters per labeling")
    parser.add_argument("--dense-n", type=int, default=10_000, help="points in the co-association comparison")
    args = parser.parse_args()
    started = time.perf_counter()
    labels = labelings(synthetic(args.n), args.repeats, args.k)
    from sklearn.metrics import adjusted_rand_score

    agreement = np.mean([adjusted_rand_score(labels[0], refit) for refit in labels[1:]])
    print(f"{args.n:,} synthetic 20-d points, a reference and {args.repeats} refits by k-means (k={args.k}, "
          f"{time.perf_counter() - started:.1f} s; mean ARI of a refit with the reference {agreement:.3f}); "
          f"{os.cpu_count()} CPUs", flush=True)
    ours = measure("consensus", labels)
    print(f"consensus + stability, all {args.n:,} points: {ours['seconds']:.3f} s, peak RSS "
          f"{ours['peak_rss_mib']:,.0f} MiB (RSS before the step {ours['rss_before_mib']:,.0f} MiB), "
          f"step's own peak allocation {ours['allocated_mib']:,.1f} MiB", flush=True)
    dense_n = min(args.dense_n, args.n)
    dense = measure("coassociation", labels[:, :dense_n])
    print(f"dense co-association, first {dense_n:,} points: {dense['seconds']:.3f} s, peak RSS "
          f"{dense['peak_rss_mib']:,.0f} MiB (before {dense['rss_before_mib']:,.0f} MiB), step's own peak "
          f"allocation {dense['allocated_mib']:,.1f} MiB")
    print(f"a co-association of all {args.n:,} points would hold {args.n ** 2 * 4 / 2 ** 30:,.1f} GiB of float32 "
          f"({args.n ** 2 * 4 / 2 ** 20 / max(ours['allocated_mib'], 1e-9):,.0f}x the consensus step's allocation)")
    print("command: python bench/stability.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
