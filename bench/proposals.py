"""How pure are the clusters an update proposes when new classes arrive, and does the answer hold
on another machine?

The setting of tests/test_update.py: the first 500 scikit-learn digits, 0-7 (four in five of them)
clustered with the default settings and the given seed; then the 8s and 9s arrive and
`imgcluster.update` files them, holding those that fit no cluster and proposing new clusters
from them. Printed per seed: each proposed cluster's size and digits, and its purity (share of
its most common digit).

With --nudges N it then asks whether the proposal step depends on the last digits of the floats,
as it would between processors: the held images' embeddings are nudged N times by one float16
step in one element in ten (the store keeps embeddings as float16, so another processor's torch
or numba moves them by about that), and the groups found by the proposal step (cohesion in the
embedding space) are compared with those of the previous one (UMAP 5-d + HDBSCAN, the fit's
recipe, on the same points). Printed: how many distinct outcomes each gave, and the worst purity.

    python bench/proposals.py [--seeds 0,1,2,3] [--nudges 20] [--data-dir /tmp/imgcluster-proposals]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.api import living
from imgcluster.demo import write_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--nudges", type=int, default=0)
    parser.add_argument("--data-dir", default="/tmp/imgcluster-proposals")
    args = parser.parse_args()
    print("$ python " + " ".join(sys.argv))
    root = Path(args.data_dir)
    digits, cache = root / "digits", root / "embedded"
    write_digits(digits, limit=500)
    labels = read_labels(digits)
    if not (cache / "embedded.done").exists():  # embed once; every seed's workspace starts as a copy
        shutil.rmtree(cache, ignore_errors=True)
        imgcluster.cluster(digits / "images", workspace=cache, model="efficientnet-lite0", namer="none")
        (cache / "embedded.done").write_text("")
    inputs = record_proposal_inputs()
    for seed in [int(s) for s in args.seeds.split(",")]:
        inputs.clear()
        started = time.perf_counter()
        done = living_update(root / f"seed-{seed}", cache, labels, seed)
        after = {r.path: int(c) for r, c in zip(done.run.images, done.run.assignments.clusters.tolist())}
        how = dict(zip((r.path for r in done.run.images), done.run.assignments.how_per_image()))
        arrived = Counter(how[p] for p in after if digit_of(p) in {"8", "9"})
        print(f"seed {seed}: {done.n_new} 8s and 9s arrived: {arrived['filed']} filed into old clusters, "
              f"{arrived[living.PROPOSED]} proposed, {arrived[living.HELD]} held "
              f"({time.perf_counter() - started:.0f} s)")
        for p in done.proposed:
            counts = Counter(digit_of(path) for path, c in after.items() if c == p.cluster)
            top, n = counts.most_common(1)[0]
            print(f"  proposed cluster {p.cluster}: {p.size} images, {dict(sorted(counts.items()))}, "
                  f"purity {n / p.size:.0%} ({top})")
        if args.nudges and inputs:
            truth = digits_of_vectors(inputs[0][0], cache, labels)
            compare_under_nudges(*inputs[0], truth, args.nudges, seed)


def read_labels(digits: Path) -> dict[str, int]:
    with open(digits / "labels.csv") as handle:
        return {str(digits / "images" / row["path"]): int(row["label"]) for row in csv.DictReader(handle)}


def digit_of(path: str) -> str:
    return Path(path).parent.name


def living_update(base: Path, cache: Path, labels: dict[str, int], seed: int) -> living.Update:
    """The test's collection: 0-7 (four in five) fitted with ``seed``, then the 8s and 9s added."""
    shutil.rmtree(base, ignore_errors=True)
    folder, later = base / "images", base / "eights-and-nines"
    for number, (path, label) in enumerate(sorted((Path(p), label) for p, label in labels.items())):
        if label < 8 and number % 5 == 0:
            continue
        dest = later if label >= 8 else folder
        (dest / str(label)).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / str(label) / path.name)
    workspace = Path(shutil.copytree(cache, base / "workspace"))
    config = imgcluster.RunConfig()
    config = dataclasses.replace(config, reduce=dataclasses.replace(config.reduce, seed=seed),
                                 name=dataclasses.replace(config.name, namer="none"))
    imgcluster.cluster(folder, workspace=workspace, config=config, run_key="fit")
    for digit in sorted(later.iterdir()):
        shutil.copytree(digit, folder / digit.name)
    return imgcluster.update(folder, workspace=workspace, run_key="with-8-9")


def record_proposal_inputs() -> list[tuple]:
    """Keep the arguments of every call of the proposal step's grouping (it is module-level, so
    the update finds the wrapper)."""
    calls: list[tuple] = []
    original = living.dense_groups

    def recording(vectors: np.ndarray, *rest: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        calls.append((vectors.copy(), *rest))
        return original(vectors, *rest)

    living.dense_groups = recording
    return calls


def compare_under_nudges(vectors: np.ndarray, min_size: int, reduce_config: imgcluster.ReduceConfig,
                         min_similarity: float, min_cohesion: float, min_member: float, truth: np.ndarray,
                         nudges: int, seed: int) -> None:
    from imgcluster.cluster.cohesive import cohesive_groups

    rng = np.random.default_rng(seed)
    outcomes: dict[str, Counter] = {"cohesion (now)": Counter(), "UMAP + HDBSCAN (before)": Counter()}
    worst = {name: 1.0 for name in outcomes}
    for _ in range(nudges):
        nudged = nudge(vectors, rng)
        _, coarse = imgcluster.fit_clusters(
            nudged, dataclasses.replace(reduce_config, fit_sample=0, map_method="pca"),
            imgcluster.ClusterConfig(method="hdbscan", min_cluster_size=min_size, noise="keep"))
        found = {"cohesion (now)": cohesive_groups(nudged, min_cohesion, min_size, min_member),
                 "UMAP + HDBSCAN (before)": coarse.labels}
        for name, grouping in found.items():
            groups = [Counter(truth[grouping == g].tolist()) for g in sorted(set(grouping.tolist()) - {-1})]
            outcomes[name][tuple(sorted(tuple(sorted(g.items())) for g in groups))] += 1
            worst[name] = min([worst[name]] + [max(g.values()) / sum(g.values()) for g in groups])
    print(f"  {nudges} float16 nudges of the {len(vectors)} images the proposal step groups "
          f"(bars: cohesion {min_cohesion:.3f}, member {min_member:.3f}):")
    for name, seen in outcomes.items():
        common, times = seen.most_common(1)[0]
        print(f"    {name}: {len(seen)} distinct outcomes, worst purity {worst[name]:.0%}; most common "
              f"({times}x): {[dict(g) for g in common]}")


def nudge(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One float16 step up or down in a tenth of the elements, renormalised."""
    half = vectors.astype(np.float16)
    step = np.where(rng.random(half.shape) < 0.5, np.nextafter(half, np.float16(np.inf)),
                    np.nextafter(half, np.float16(-np.inf)))
    moved = np.where(rng.random(half.shape) < 0.1, step, half).astype(np.float32)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def digits_of_vectors(vectors: np.ndarray, cache: Path, labels: dict[str, int]) -> np.ndarray:
    """The digit of each vector: that of the identical embedding among all 500 images."""
    from imgcluster.store import Workspace

    ws = Workspace.open(cache)
    try:
        run = ws.run()
        records = ws.images(sorted(labels))
        every = ws.load_embeddings(run.model_id, [r.content_hash for r in records]).reshape(len(records), -1)
    finally:
        ws.close()
    digits = np.asarray([labels[r.path] for r in records])
    return digits[np.argmax(vectors @ every.T, axis=1)]


if __name__ == "__main__":
    main()
