"""Does a run's cluster tree find both levels of a collection with two, as well as k-means told each level's k?

Sets with a fine and a coarse truth:
- synthetic: 512-d unit vectors, 6 super-clusters of 4 clusters each (80 vectors per cluster, see
  ``nested_vectors``);
- photos: the crops of 21 sample photographs (fine: the photo), each photo given one of 6 themes by
  hand (space, texture, science imagery, text and graphics, objects, scenes and animals: ``THEMES``);
- digits: scikit-learn's 1,797 digits (fine: the digit), coarse: groups of digits alike in shape,
  by hand ({0,6}, {1,7}, {3,5,8}, {4,9}, {2}: ``DIGIT_GROUPS``).
Photos and digits are read from workspaces where they are already embedded with efficientnet-lite0
(``--photos``/``--digits``: the image folders, with labels.csv beside them). For each seed, one fit
as ``imgcluster cluster`` makes it (``fit_clusters``: UMAP 5-d, auto mode), then its tree (each
linkage in ``LINKAGES``) over its leaves (its clusters, split where they
hold well separated parts: ``cluster/leaves.py``), scored by NMI (unclustered images one more label,
as `imgcluster evaluate`) against each level:
- best cut: the best of the tree's cuts at every k;
- cut at true k: the tree cut at the level's true number of clusters;
- coarse/fine/default: the tree's coarse cut, its leaves, its default (the run's own clusters =
  today's auto mode);
- k-means: imgcluster's k-means told the level's true k, in the same clustering space;
- before: the tree whose leaves are the run's clusters (this script's first version), with the
  coarse rule of then ("earlier coarse rule") and of now.
``--cost N[,N]`` times fit_clusters and the tree on N synthetic vectors (bench/synthetic.py) instead.

    python bench/hierarchy.py [--seeds 2] [--sets synthetic,photos,digits]
    python bench/hierarchy.py --cost 20000,150000
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

import imgcluster
from imgcluster.cluster.leaves import split_clusters
from imgcluster.cluster.tree import LINKAGES, build_tree, cut_labels
from imgcluster.store import Workspace

THEMES = {
    "space": ["astronaut", "hubble_deep_field", "moon", "rocket"],
    "texture": ["brick", "grass", "gravel"],
    "science imagery": ["immunohistochemistry", "retina"],
    "text and graphics": ["page", "text", "logo", "colorwheel"],
    "objects": ["clock", "coffee", "coins"],
    "scenes and animals": ["camera", "chelsea", "horse", "flower", "china"],
}
DIGIT_GROUPS = {"0": "06", "6": "06", "1": "17", "7": "17", "3": "358", "5": "358", "8": "358", "4": "49", "9": "49",
                "2": "2"}
MODEL = "efficientnet-lite0"


def nested_vectors(seed: int = 0, supers: int = 6, subs: int = 4, per: int = 80, d: int = 512):
    """Unit vectors: clusters (fine labels) around centres 0.2 from their super-cluster's centre
    (coarse labels; super-centres are random unit vectors, ~1.4 apart), each point 0.04 per
    dimension from its cluster's centre (~0.9 in all: cosine ~0.65 to it, as bench/synthetic.py).
    Two points of one cluster are then ~1.28 apart, of one super-cluster ~1.31, of two ~1.9."""
    rng = np.random.default_rng(seed)
    tops = _unit(rng.normal(size=(supers, d)))
    points, fine, coarse = [], [], []
    for top in range(supers):
        for sub in range(subs):
            centre = tops[top] + 0.2 * _unit(rng.normal(size=(1, d)))[0]
            points.append(centre + rng.normal(scale=0.04, size=(per, d)))
            fine += [top * subs + sub] * per
            coarse += [top] * per
    return _unit(np.concatenate(points)).astype(np.float32), np.array(fine), np.array(coarse)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embedded_set(folder: Path, coarse_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A labelled folder's stored embeddings (the newest run's model, efficientnet-lite0) with its
    fine labels (labels.csv beside the folder) and coarse ones (``coarse_of(fine)``)."""
    with open(folder.parent / "labels.csv") as handle:
        labels = {str((folder / row["path"]).resolve()): row["label"] for row in csv.DictReader(handle)}
    ws = Workspace.open(folder / ".imgcluster", create=False)
    try:
        model_id = next(r.model_id for r in ws.runs() if r.model_name == MODEL)
        images = [r for r in ws.images() if r.status == "ok" and r.path in labels]
        vectors = ws.load_embeddings(model_id, [r.content_hash for r in images])
    finally:
        ws.close()
    fine = [labels[r.path] for r in images]
    return vectors.astype(np.float32), np.array(fine), np.array([coarse_of(f) for f in fine])


def nmi(truth: np.ndarray, found: np.ndarray) -> float:
    return float(normalized_mutual_info_score(truth, found))


def score_set(name: str, x: np.ndarray, levels: dict[str, np.ndarray], seeds: int) -> dict[str, list[float]]:
    """NMI per (tree or method, level, what) over the seeds; the fit's and the tree's times."""
    scores: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        scores.setdefault(key, []).append(value)

    for seed in range(seeds):
        timings: dict[str, float] = {}
        started = time.perf_counter()
        reduction, clustering = imgcluster.fit_clusters(
            x, imgcluster.ReduceConfig(seed=seed), imgcluster.ClusterConfig(seed=seed), timings=timings)
        add("fit seconds", time.perf_counter() - started)
        labels = np.asarray(clustering.labels)
        started = time.perf_counter()
        leaves = split_clusters(labels, reduction.space, seed=seed)  # as a run's tree is built (run/tree.py)
        add("split seconds", time.perf_counter() - started)
        add("clusters", float(len(set(labels.tolist()) - {-1})))
        add("leaves", float(len(set(leaves.tolist()) - {-1})))
        trees = {"before: clusters as leaves": (build_tree(labels, reduction.space), labels)}
        for linkage in LINKAGES:
            started = time.perf_counter()
            trees[f"{linkage}"] = (build_tree(labels, reduction.space, leaves=leaves, linkage=linkage), leaves)
            add(f"{linkage} tree seconds", time.perf_counter() - started)
        for what, (tree, per_image) in trees.items():
            cuts = {k: cut_labels(tree, per_image, k) for k in range(1, len(tree.leaves) + 1)}
            add(f"{what}: coarse k", float(tree.coarse))
            for level, truth in levels.items():
                true_k = len(set(truth.tolist()))
                add(f"{what}: best cut / {level}", max(nmi(truth, c) for c in cuts.values()))
                add(f"{what}: cut at true k / {level}", nmi(truth, cuts[min(true_k, len(tree.leaves))]))
                add(f"{what}: coarse cut / {level}", nmi(truth, cuts[tree.coarse]))
                if what == "before: clusters as leaves":
                    add(f"{what}: earlier coarse rule / {level}", nmi(truth, cuts[earlier_coarse(tree)]))
                else:
                    add(f"{what}: fine cut (the leaves) / {level}", nmi(truth, cuts[len(tree.leaves)]))
        for level, truth in levels.items():
            true_k = len(set(truth.tolist()))
            add(f"default (today's auto) / {level}", nmi(truth, labels))
            kmeans = imgcluster.cluster_points(reduction.space, imgcluster.ClusterConfig(method="kmeans", k=true_k,
                                                                                          seed=seed))
            add(f"k-means, true k / {level}", nmi(truth, np.asarray(kmeans.labels)))
        print(f"  {name} seed {seed}: {len(set(labels.tolist()) - {-1})} clusters, "
              f"{len(set(leaves.tolist()) - {-1})} leaves", flush=True)
    return scores


def earlier_coarse(tree) -> int:
    """The coarse rule before this script's second version: the largest relative jump between merge
    heights among cuts of 2 to half the leaves (a tree whose leaves are the run's clusters)."""
    n = len(tree.leaves)
    if n <= 3:
        return min(n, 2)
    heights = [tree.node(m).height for m in tree.merges]
    gaps = {k: np.log((heights[n - k] + 1e-12) / (heights[n - k - 1] + 1e-12)) for k in range(2, n // 2 + 1)}
    return max(gaps, key=lambda k: (gaps[k], -k))


def cost(sizes: list[int]) -> None:
    """fit_clusters and the tree (split into leaves, then merged) on n synthetic vectors: the tree's
    own time against the fit's."""
    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import synthetic

    for n in sizes:
        x, _ = synthetic(n)
        started = time.perf_counter()
        reduction, clustering = imgcluster.fit_clusters(x)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        leaves = split_clusters(clustering.labels, reduction.space)
        split = time.perf_counter() - started
        tree = build_tree(clustering.labels, reduction.space, leaves=leaves)
        made = time.perf_counter() - started
        print(f"n={n:,}: fit_clusters {fit:.1f} s, tree {made * 1000:.1f} ms (of it the split {split * 1000:.1f} ms) "
              f"over {tree.n_clusters} clusters, {len(tree.leaves)} leaves ({made / fit:.2%} of the fit); "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sets", default="synthetic,photos,digits")
    parser.add_argument("--photos", type=Path, default=Path("/tmp/reduce-helper/bench/photos/images"))
    parser.add_argument("--digits", type=Path, default=Path("/tmp/reduce-helper/bench/digits/images"))
    parser.add_argument("--cost", help="comma-separated collection sizes: time the tree against the fit")
    args = parser.parse_args()
    print("python bench/hierarchy.py " + " ".join(sys.argv[1:]), f"(load average {os.getloadavg()[0]:.1f})")
    if args.cost:
        cost([int(n) for n in args.cost.split(",")])
        return
    theme_of = {photo: theme for theme, photos in THEMES.items() for photo in photos}
    loaders = {
        "synthetic": lambda: nested_vectors(),
        "photos": lambda: embedded_set(args.photos, theme_of.__getitem__),
        "digits": lambda: embedded_set(args.digits, DIGIT_GROUPS.__getitem__),
    }
    for name in args.sets.split(","):
        x, fine, coarse = loaders[name]()
        print(f"{name}: {len(x):,} images, fine {len(set(fine.tolist()))} / coarse {len(set(coarse.tolist()))} "
              "clusters", flush=True)
        scores = score_set(name, x, {"fine": fine, "coarse": coarse}, args.seeds)
        for key, values in scores.items():
            spread = f" (min {min(values):.3f})" if len(values) > 1 else ""
            print(f"  {key:<40} {statistics.mean(values):.3f}{spread}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
