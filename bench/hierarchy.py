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
linkage in ``LINKAGES``), scored by NMI (unclustered images one more label, as `imgcluster
evaluate`) against each level:
- best cut: the best of the tree's cuts at every k;
- cut at true k: the tree cut at the level's true number of clusters;
- coarse/default: the tree's coarse cut and its default (the run's own clusters = today's auto mode);
- k-means: imgcluster's k-means told the level's true k, in the same clustering space;
- finer leaves: a tree over k-means leaves at 4x the run's clusters (what leaves below the run's own
  clusters would add; runs do not build these).
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
    """NMI per (linkage or method, level, what) over the seeds; the fit's and the tree's times."""
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
        add("leaves", float(len(set(labels.tolist()) - {-1})))
        for linkage in LINKAGES:
            started = time.perf_counter()
            tree = build_tree(labels, reduction.space, linkage=linkage)
            add(f"{linkage} tree seconds", time.perf_counter() - started)
            cuts = {k: cut_labels(tree, labels, k) for k in range(1, len(tree.leaves) + 1)}
            if linkage == LINKAGES[0]:
                add("coarse k", float(tree.coarse))
            for level, truth in levels.items():
                true_k = len(set(truth.tolist()))
                add(f"{linkage} best cut / {level}", max(nmi(truth, c) for c in cuts.values()))
                add(f"{linkage} cut at true k / {level}", nmi(truth, cuts[min(true_k, len(tree.leaves))]))
                add(f"{linkage} coarse cut / {level}", nmi(truth, cuts[tree.coarse]))
        # Leaves finer than the run's own clusters (k-means at 4x as many), to see what such leaves would add.
        finer = np.asarray(imgcluster.cluster_points(reduction.space, imgcluster.ClusterConfig(
            method="kmeans", k=4 * max(2, len(set(labels.tolist()) - {-1})), seed=seed)).labels)
        finer_tree = build_tree(finer, reduction.space)
        finer_cuts = [cut_labels(finer_tree, finer, k) for k in range(1, len(finer_tree.leaves) + 1)]
        for level, truth in levels.items():
            true_k = len(set(truth.tolist()))
            add(f"default (today's auto) / {level}", nmi(truth, labels))
            add(f"finer leaves (4x k-means): best cut / {level}", max(nmi(truth, c) for c in finer_cuts))
            add(f"finer leaves (4x k-means): cut at true k / {level}",
                nmi(truth, finer_cuts[min(true_k, len(finer_cuts)) - 1]))
            kmeans = imgcluster.cluster_points(reduction.space, imgcluster.ClusterConfig(method="kmeans", k=true_k,
                                                                                          seed=seed))
            add(f"k-means, true k / {level}", nmi(truth, np.asarray(kmeans.labels)))
        print(f"  {name} seed {seed}: {len(set(labels.tolist()) - {-1})} leaves", flush=True)
    return scores


def cost(sizes: list[int]) -> None:
    """fit_clusters and the tree on n synthetic vectors: the tree's own time against the fit's."""
    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import synthetic

    for n in sizes:
        x, _ = synthetic(n)
        started = time.perf_counter()
        reduction, clustering = imgcluster.fit_clusters(x)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        tree = build_tree(clustering.labels, reduction.space)
        made = time.perf_counter() - started
        print(f"n={n:,}: fit_clusters {fit:.1f} s, tree {made * 1000:.1f} ms over {len(tree.leaves)} leaves "
              f"({made / fit:.3%} of the fit); load average {os.getloadavg()[0]:.1f}", flush=True)


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
