"""How fast is one similar-image query over 100k and 1M stored 512-d vectors, exact and approximate,
and how much does the approximate index miss?

Synthetic clustered vectors (1,000 centres, noise of the same norm, L2-normalised; 512-d like
CLIP ViT-B/32), generated in float32 chunks so 1M vectors take 2 GB once. Per size:
- exact: faiss inner product over every vector (what imgcluster's index is up to 250k vectors);
- approximate: imgcluster.search.VectorIndex's IVF-SQ8 (lists ~ 2 sqrt(n), 1/64 of them probed,
  at least 16), what it builds beyond 250k; at 100k it is forced (exact_up_to=0) for comparison.
200 fresh queries, one at a time: p50 and p95 latency, and recall@10 of approximate against exact.

    python bench/search.py [--sizes 100000 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from imgcluster.search import VectorIndex

DIM, CENTRES = 512, 1000


def vectors(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        chunk = centres[rng.integers(0, CENTRES, stop - start)]
        chunk += rng.standard_normal((stop - start, DIM), dtype=np.float32) / np.sqrt(DIM)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start:stop] = chunk
    return out


def timed(search, queries: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(search(q[None, :]))
        times.append(1000 * (time.perf_counter() - started))
    return times, found


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32) / np.sqrt(DIM)
    print(f"{DIM}-d clustered synthetic vectors, {args.queries} single queries, k=10, "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads\n")
    print("| vectors | index | build s | p50 ms | p95 ms | recall@10 vs exact |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        stored = vectors(n, rng, centres)
        queries = vectors(args.queries, rng, centres)
        exact_times, exact = timed(lambda q: faiss.knn(q, stored, 10, metric=faiss.METRIC_INNER_PRODUCT)[1][0],
                                   queries)
        print(f"| {n:,} | exact (inner product, every vector) | 0 | {np.percentile(exact_times, 50):.1f} | "
              f"{np.percentile(exact_times, 95):.1f} | 1 |", flush=True)
        started = time.perf_counter()
        index = VectorIndex(exact_up_to=0).fit(stored, [str(i) for i in range(n)])
        build = time.perf_counter() - started
        approx_times, approx = timed(lambda q: index.index_.search(q, 10)[1][0], queries)
        recall = np.mean([len(set(a.tolist()) & set(e.tolist())) / 10 for a, e in zip(approx, exact)])
        described = index.describe()
        print(f"| {n:,} | approximate ({described['kind']}, nlist {described['nlist']}, nprobe "
              f"{described['nprobe']}) | {build:.0f} | {np.percentile(approx_times, 50):.2f} | "
              f"{np.percentile(approx_times, 95):.2f} | {recall:.3f} |", flush=True)
        stored = index = None  # free the vectors before the next size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory {peak:,.0f} MB; command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
