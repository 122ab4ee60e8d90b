"""Does a fresh `imgcluster cluster` still pay numba's compilation, and how much do small collections
save by sharing one neighbour graph between the two UMAP fits?

On collections whose embeddings are already cached in their workspace:
(a) fresh processes: `imgcluster cluster FOLDER` run --fresh-runs times with NUMBA_CACHE_DIR set to
    an empty folder: the first compiles umap-learn's kernels into it, the later ones load them
    (what a user sees from the second run on a machine);
(b) the same clustering (`imgcluster.cluster(FOLDER)`) twice in this process: the second call is
    the already-warm figure (a)'s later runs are compared with;
(c) `reduce()` in this warm process, per collection size: UMAP's own exact neighbours below 4,096
    points (the old path) against the shared faiss graph (`reduce.nearest_neighbors`), with the
    share of 15-nearest neighbours the two graphs agree on.
Collections: scikit-learn's 1,797 digits (`imgcluster demo`), samples of it, and --photos crops of
21 sample photographs (187 per photo: 3,927 images, like the issue's 3,925-photo collection). The
first call embeds them into DIR (kept, so later calls of this script skip embedding).

    python bench/first_run.py [--dir /tmp/imgcluster-first-run] [--sizes 500,1797] [--photos 187]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.api import steps
from imgcluster.demo import write_digits, write_photo_crops
from imgcluster.reduce import effective_neighbors

OLD_SHARED_KNN_FROM = 4096  # before this change: below it UMAP searched its own exact neighbours


def embedded(folder: Path) -> np.ndarray:
    """The folder's embeddings (embedding what is not cached yet)."""
    with imgcluster.open_workspace(folder) as ws:
        found = imgcluster.scan(folder, workspace=ws)
        return np.asarray(imgcluster.embed(found, workspace=ws).vectors)


def fresh_runs(folder: Path, times: int, cache: Path) -> list[float]:
    """Wall seconds of ``times`` new processes running `imgcluster cluster folder`, sharing ``cache``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgcluster.cli", "cluster", str(folder), "--json"], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - started)
    return seconds


def warm_runs(folder: Path) -> tuple[float, float]:
    """Seconds of the first and second `imgcluster.cluster(folder)` in this process."""
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        imgcluster.cluster(folder)
        seconds.append(time.perf_counter() - started)
    return seconds[0], seconds[1]


def reduce_both_ways(vectors: np.ndarray) -> tuple[float, float, float]:
    """Seconds of reduce() with UMAP's own neighbours and with the shared graph, and the share of
    the exact 15-nearest neighbours (what UMAP finds below 4,096 points) the shared graph holds."""
    from sklearn.metrics import pairwise_distances

    from imgcluster.reduce import nearest_neighbors

    seconds = []
    for shared_from in (OLD_SHARED_KNN_FROM, steps._SHARED_KNN_FROM):
        saved, steps._SHARED_KNN_FROM = steps._SHARED_KNN_FROM, shared_from
        try:
            started = time.perf_counter()
            steps.reduce(vectors)
            seconds.append(time.perf_counter() - started)
        finally:
            steps._SHARED_KNN_FROM = saved
    k = effective_neighbors(None, len(vectors))
    ours, _, _ = nearest_neighbors(vectors, k)
    theirs = np.argsort(pairwise_distances(vectors, metric="cosine"), axis=1)[:, :k]  # all pairs, as UMAP
    agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs)])
    return seconds[0], seconds[1], float(agree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "imgcluster-first-run",
                        help="where the collections and their workspaces are kept between calls")
    parser.add_argument("--sizes", default="500,1797", help="digit sample sizes for (c)")
    parser.add_argument("--photos", type=int, default=187, help="crops per sample photo (21 photos); 0 skips them")
    parser.add_argument("--fresh-runs", type=int, default=3, help="fresh processes per collection in (a)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    collections = {"digits": write_digits(args.dir / "digits")}
    if args.photos:
        collections["photos"] = write_photo_crops(args.dir / "photos", per_photo=args.photos)
    vectors = {name: embedded(folder) for name, folder in collections.items()}

    rows = []
    for name, folder in collections.items():
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
            fresh = fresh_runs(folder, args.fresh_runs, Path(cache))
        first, warm = warm_runs(folder)
        rows.append((name, len(vectors[name]), fresh, first, warm))

    sizes = [int(s) for s in args.sizes.split(",") if s]
    reduce_rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        sample = vectors["digits"][np.sort(rng.choice(len(vectors["digits"]), min(n, len(vectors["digits"])),
                                                      replace=False))]
        reduce_rows.append((f"digits {len(sample)}", len(sample), *reduce_both_ways(sample)))
    if "photos" in vectors:
        reduce_rows.append((f"photos {len(vectors['photos'])}", len(vectors["photos"]),
                            *reduce_both_ways(vectors["photos"])))

    print("(a) fresh processes, `imgcluster cluster FOLDER` (embeddings cached; numba cache empty at the first)")
    print("(b) the same clustering in this process: first call, then an already-warm call")
    print(f"{'collection':<12}{'images':>8}  {'fresh runs (s)':<26}{'in-process 1st':>15}{'warm':>8}"
          f"{'2nd fresh / warm':>18}")
    for name, n, fresh, first, warm in rows:
        later = fresh[1] if len(fresh) > 1 else float("nan")
        print(f"{name:<12}{n:>8}  {', '.join(f'{s:.1f}' for s in fresh):<26}{first:>15.1f}{warm:>8.1f}"
              f"{later / warm:>17.2f}x")
    print("\n(c) reduce() (UMAP 5-d space + 2-D map) in this warm process")
    print(f"{'collection':<16}{'UMAP own kNN (s)':>18}{'shared graph (s)':>18}{'speed-up':>10}{'kNN agree':>11}")
    for name, n, old, new, agree in reduce_rows:
        print(f"{name:<16}{old:>18.2f}{new:>18.2f}{old / new:>9.1f}x{agree:>11.3f}")
    print(f"\nmachine: {os.cpu_count()} CPUs, 1-min load average {load_at_start:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    print("command: python bench/first_run.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
