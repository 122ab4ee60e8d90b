"""Does imgcluster's default find the real groups as well as k-means told the true number of groups?

Two labelled sets of real images, embedded once with efficientnet-lite0 (the bundled model):
- digits: scikit-learn's 1,797 handwritten digit scans (10 labels);
- photos: 30 random crops of each of 21 scikit-image / scikit-learn sample photographs (21 labels:
  which photo a crop came from).
Each is clustered, for several seeds, by:
- default: imgcluster's default, auto mode (UMAP 5-d, then HDBSCAN settings and k-means over a range
  of k scored by embedding-graph modularity + clustering-space silhouette), no k given;
- hdbscan: the previous default (HDBSCAN, min_cluster_size ~1% of n), no k given;
- hdbscan+attach: the same with --noise attach (unclustered images join a cluster when its vote
  is >= 0.5 sure);
- kmeans-umap: k-means with the TRUE k in the same UMAP space (imgcluster's k-means: the best of up
  to 10 k-means++ starts, as auto mode's k-means candidates);
- kmeans-raw: k-means with the TRUE k on the embeddings themselves (the GumGum recipe without scaling).
NMI and ARI count unclustered images as one more cluster (as `imgcluster evaluate` does under "all").

    python bench/quality.py [--seeds 3] [--data-dir /tmp/imgcluster-quality] [--digit-limits 300,500,1000]
    python bench/quality.py --class-subsets --seeds 2   # 16 collections of 2-5 digits / 4-10 photos
    python bench/quality.py --seeds 2 --methods default  # only auto mode (the others do not move with it)
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.demo import write_digits, write_photo_crops

METHODS = {
    "default": {},
    "hdbscan": {"cluster": {"method": "hdbscan"}},
    "hdbscan+attach": {"cluster": {"method": "hdbscan", "noise": "attach"}},
    "kmeans-umap": {"cluster": {"method": "kmeans", "k": "TRUE_K"}},
    "kmeans-raw": {"reduce": {"method": "none"}, "cluster": {"method": "kmeans", "k": "TRUE_K"}},
}


def make_config(overrides: dict, true_k: int, seed: int) -> imgcluster.RunConfig:
    reduce = dict(overrides.get("reduce", {}), seed=seed)
    cluster = {k: (true_k if v == "TRUE_K" else v) for k, v in overrides.get("cluster", {}).items()}
    cluster["seed"] = seed
    return imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(**reduce), cluster=imgcluster.ClusterConfig(**cluster))


def score(folder: Path, labels_csv: Path, workspace: Path, seeds: int,
          methods: tuple[str, ...] = tuple(METHODS)) -> dict[str, list[tuple[float, float, int]]]:
    with open(labels_csv) as handle:
        true_k = len({row["label"] for row in csv.DictReader(handle)})
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in methods}
    for seed in range(seeds):
        for name in methods:
            overrides = METHODS[name]
            run = imgcluster.cluster(folder, model="efficientnet-lite0", workspace=workspace,
                                     config=make_config(overrides, true_k, seed))
            metrics = imgcluster.evaluate(labels_csv, run.key, workspace=workspace)["all"]
            results[name].append((metrics["nmi"], metrics["ari"], run.record.n_clusters))
    return results


def write_class_subsets(base: Path, digits: Path, photos: Path) -> dict[str, Path]:
    """Collections of a few classes, drawn with a fixed seed: two each of 2, 3, 4 and 5 digit classes
    and of 4, 6, 8 and 10 photos. Files are hard-linked (copied where links fail) from the full sets."""
    rng = np.random.default_rng(7)
    drawn = []
    for source, sizes in ((digits, (2, 3, 4, 5)), (photos, (4, 6, 8, 10))):
        with open(source.parent / "labels.csv") as handle:
            rows = list(csv.DictReader(handle))
        classes = sorted({row["label"] for row in rows})
        for size in sizes:
            for _ in range(2):
                chosen = sorted(rng.choice(classes, size, replace=False))
                drawn.append((source, [row for row in rows if row["label"] in chosen], chosen))
    subsets = {}
    for source, rows, chosen in drawn:
        name = f"{source.parent.name}-" + "-".join(chosen)
        images = base / "subsets" / name / "images"
        for row in rows:
            target = images / row["path"]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source / row["path"], target)
                except OSError:
                    shutil.copy2(source / row["path"], target)
        with open(images.parent / "labels.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "label"])
            writer.writeheader()
            writer.writerows({"path": row["path"], "label": row["label"]} for row in rows)
        subsets[f"{source.parent.name} {', '.join(chosen)}"] = images
    return subsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None, help="where to write the images (default: a temp dir)")
    parser.add_argument("--digit-limits", default="",
                        help="also the first N digits for each N in this comma-separated list (e.g. 300,500,1000)")
    parser.add_argument("--only-limits", action="store_true", help="only the --digit-limits sets")
    parser.add_argument("--class-subsets", action="store_true",
                        help="only 16 collections of a few classes (2-5 digits, 4-10 photos): default vs k-means "
                             "told the true k")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, of {', '.join(METHODS)} (default: all)")
    args = parser.parse_args()
    methods = tuple(filter(None, args.methods.split(",")))
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="imgcluster-quality-"))
    if args.class_subsets:
        return compare_on_subsets(write_class_subsets(base, write_digits(base / "digits"),
                                                      write_photo_crops(base / "photos")), args.seeds)
    sets = {} if args.only_limits else {"digits (1,797, 10 labels)": write_digits(base / "digits"),
                                        "photos (630 crops, 21 labels)": write_photo_crops(base / "photos")}
    for limit in filter(None, args.digit_limits.split(",")):
        sets[f"first {int(limit):,} digits"] = write_digits(base / f"digits-{int(limit)}", limit=int(limit))
    started = time.perf_counter()
    for title, folder in sets.items():
        results = score(folder, folder.parent / "labels.csv", folder.parent / "workspace", args.seeds, methods)
        print(f"\n{title}, efficientnet-lite0, seeds 0-{args.seeds - 1}: NMI / ARI per seed, mean NMI")
        for name, rows in results.items():
            per_seed = "  ".join(f"{nmi:.3f}/{ari:.3f} ({k})" for nmi, ari, k in rows)
            print(f"  {name:>15}: {per_seed}   mean NMI {statistics.mean(r[0] for r in rows):.3f}", flush=True)
    print(f"\n(clusters found in brackets; {time.perf_counter() - started:.0f} s in all)")
    print("command: python bench/quality.py " + " ".join(sys.argv[1:]))


def compare_on_subsets(subsets: dict[str, Path], seeds: int) -> None:
    started = time.perf_counter()
    pairs = []
    print(f"default vs k-means told the true k, NMI per seed (0-{seeds - 1}), clusters found in brackets")
    for title, folder in subsets.items():
        results = score(folder, folder.parent / "labels.csv", folder.parent / "workspace", seeds,
                        methods=("default", "kmeans-umap"))
        runs = list(zip(results["default"], results["kmeans-umap"]))
        pairs += [(auto[0], kmeans[0]) for auto, kmeans in runs]
        print(f"  {title:>40}: " + "  ".join(f"{auto[0]:.3f} ({auto[2]}) vs {kmeans[0]:.3f}" for auto, kmeans in runs),
              flush=True)
    equal = sum(abs(a - b) < 0.0005 for a, b in pairs)
    below = sum(a < b - 0.02 for a, b in pairs)
    print(f"\nmean NMI default {statistics.mean(a for a, _ in pairs):.3f}, k-means told the true k "
          f"{statistics.mean(b for _, b in pairs):.3f}; equal in {equal} of {len(pairs)} runs, default more than "
          f"0.02 below in {below} ({time.perf_counter() - started:.0f} s)")
    print("command: python bench/quality.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
