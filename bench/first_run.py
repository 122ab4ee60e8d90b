"""Does a fresh `imgcluster cluster` still pay numba's compilation, and how much do small collections
save by sharing one neighbour graph between the two UMAP fits?

On collections whose embeddings are already cached in their workspace:
(a) fresh processes running `imgcluster cluster FOLDER` with NUMBA_CACHE_DIR set to an empty folder:
    the first compiles umap-learn's kernels into it, the later ones load them (what a user sees
    from the second run on a machine); each round also runs one ending the ordinary way (`main()` and
    the interpreter's full teardown, as the script did before it ended with os._exit);
(b) the same clustering (`imgcluster.cluster(FOLDER)`) in this process: after its first call, each
    call is the already-warm figure; (a)'s later runs alternate with these calls, so a change in
    the machine's load falls on both;
(a') each round, a fresh process that only imports what `imgcluster cluster` imports: with (b), the
    least a fresh run can take once nothing is compiled, as a ratio to the warm run;
(c) `reduce()` in this warm process, per collection size: UMAP's own exact neighbours below 4,096
    points (the old path) against the shared faiss graph (`reduce.nearest_neighbors`), with the
    share of 15-nearest neighbours the two graphs agree on.
Collections: scikit-learn's 1,797 digits (`imgcluster demo`), samples of it, and --photos crops of
21 sample photographs (187 per photo: 3,927 images, like the issue's 3,925-photo collection). The
first call embeds them into DIR (kept, so later calls of this script skip embedding).

    python bench/first_run.py [--dir /tmp/imgcluster-first-run] [--sizes 500,1797] [--photos 187] [--rounds 3]
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


# The command as before the script skipped the interpreter's teardown: main() and an ordinary exit.
ORDINARY_EXIT = ["-c", "from imgcluster.cli import main; main()"]


def fresh(*args: str, cache: Path, ordinary: bool = False) -> float:
    """Wall seconds of a new process running `imgcluster ARGS` with numba's cache in ``cache``
    (``ordinary``: ending with the interpreter's full teardown, as the script did before)."""
    started = time.perf_counter()
    entry = ORDINARY_EXIT if ordinary else ["-m", "imgcluster.cli"]
    subprocess.run([sys.executable, *entry, *args], env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


# What a fresh `imgcluster cluster` imports before its first step, and nothing else: the part of a
# fresh process no cache of compiled code can remove (numba's kernels come from its cache here too;
# pydantic is how typer reads the options).
IMPORTS_ONLY = ["-c", "import os, imgcluster.cli, hdbscan, faiss, sklearn.cluster, pyarrow.parquet, pydantic; "
                "from imgcluster.reduce import import_umap; import_umap(); os._exit(0)"]


def imports_only(cache: Path) -> float:
    """Wall seconds of a new process that only imports what `imgcluster cluster` imports."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *IMPORTS_ONLY], env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def timed_cluster(folder: Path) -> float:
    """Seconds of `imgcluster.cluster(folder)` in this process."""
    started = time.perf_counter()
    imgcluster.cluster(folder)
    return time.perf_counter() - started


def fresh_against_warm(folder: Path, rounds: int, cache: Path) -> dict[str, object]:
    """The first fresh process on ``folder``, this process's first call, then ``rounds`` of a fresh
    process, a warm call and a fresh process ending the ordinary way, interleaved so that a change in
    the machine's load hits all three."""
    cold = fresh("cluster", str(folder), "--json", cache=cache)
    first = timed_cluster(folder)
    rounds_ = [(fresh("cluster", str(folder), "--json", cache=cache), timed_cluster(folder),
                fresh("cluster", str(folder), "--json", cache=cache, ordinary=True), imports_only(cache))
               for _ in range(rounds)]
    return {"cold": cold, "first": first, "pairs": [(f, w) for f, w, _, _ in rounds_],
            "ordinary": [(o, w) for _, w, o, _ in rounds_], "imports": [i for _, _, _, i in rounds_]}


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
    parser.add_argument("--rounds", type=int, default=3, help="pairs of a fresh process and a warm call")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    collections = {"digits": write_digits(args.dir / "digits")}
    if args.photos:
        collections["photos"] = write_photo_crops(args.dir / "photos", per_photo=args.photos)
    vectors = {name: embedded(folder) for name, folder in collections.items()}

    rows = {}
    make_run = float("nan")
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:  # empty: as on a new machine
        for name, folder in collections.items():
            rows[name] = fresh_against_warm(folder, args.rounds, Path(cache))
            if name == "digits":  # `make run` a second time: the demo command, then the clustering
                make_run = (fresh("demo", str(args.dir / "digits"), cache=Path(cache))
                            + fresh("cluster", str(folder), cache=Path(cache)))

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

    print("(a) fresh processes, `imgcluster cluster FOLDER --json`, embeddings cached (numba's cache empty before the "
          "first digits run, kept after), interleaved with (b) the same clustering, `imgcluster.cluster(FOLDER)`, in "
          "this warm process")
    print(f"{'collection':<12}{'images':>7}{'1st fresh':>11}{'1st in-process':>16}  "
          f"{'later fresh / warm, per round (s)':<44}{'median ratio':>13}")
    for name, row in rows.items():
        pairs = row["pairs"]
        ratios = sorted(f / w for f, w in pairs)
        print(f"{name:<12}{len(vectors[name]):>7}{row['cold']:>11.1f}{row['first']:>16.1f}  "
              f"{'  '.join(f'{f:.1f}/{w:.1f}' for f, w in pairs):<44}{ratios[len(ratios) // 2]:>12.2f}x")
        before = sorted(o / w for o, w in row["ordinary"])
        print(f"{'  the same, ending the ordinary way (before)':<48}"
              f"{'  '.join(f'{o:.1f}/{w:.1f}' for o, w in row['ordinary']):<44}{before[len(before) // 2]:>12.2f}x")
        # The least a fresh run can take: the warm run plus the imports no cache removes.
        floor = sorted((w + i) / w for (_, w), i in zip(pairs, row["imports"]))
        print(f"{'  imports alone (s), and warm + imports / warm':<48}"
              f"{'  '.join(f'{i:.1f}' for i in row['imports']):<44}{floor[len(floor) // 2]:>12.2f}x")
    print(f"`make run` a second time (fresh `imgcluster demo` + fresh `imgcluster cluster` on the digits): "
          f"{make_run:.1f} s")
    print("\n(c) reduce() (UMAP 5-d space + 2-D map) in this warm process")
    print(f"{'collection':<16}{'UMAP own kNN (s)':>18}{'shared graph (s)':>18}{'speed-up':>10}{'kNN agree':>11}")
    for name, n, old, new, agree in reduce_rows:
        print(f"{name:<16}{old:>18.2f}{new:>18.2f}{old / new:>9.1f}x{agree:>11.3f}")
    print(f"\nmachine: {os.cpu_count()} CPUs, 1-min load average {load_at_start:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    print("command: python bench/first_run.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
