"""How fast does a fitted run file new images, compared with the seed's 1-2 s per image?

Four figures, in one process (plus one child process for the cold start):
1. one new embedding into a run of N images (default 150,000 synthetic 512-d unit vectors, like the
   seed's collection): median over 1,000 single calls, predictor already loaded (target <= 30 ms);
2. batches of 1,000 embeddings: points/s (target >= 5,000/s), and how often the (approximate)
   index files a query into the same cluster as exact search would;
3. end to end from an image file with efficientnet-lite0 (decode, embed, file), model loaded;
4. cold start: a fresh `imgcluster predict one.png --run RUN` process, wall time (target <= 5 s).
The baseline is the seed's recipe, `hdbscan.approximate_predict` after `UMAP.transform`, whose first
call in a process pays numba's JIT: 3b times that path on the digits run for comparison.

    python bench/predict.py [--n 150000] [--digits 600]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.cluster.openset import DEFAULT_HELD_QUANTILE
from imgcluster.cluster.predictor import Predictor


def synthetic_run(n: int, d: int = 512, clusters: int = 40, seed: int = 0):
    """Unit vectors around ``clusters`` random centres, with labels, probabilities and a fake map."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    labels = rng.integers(0, clusters, n)
    vectors = centres[labels] + rng.normal(scale=0.8, size=(n, d))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels, np.ones(n), rng.normal(size=(n, 2)), np.arange(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150_000, help="training embeddings in the synthetic run")
    parser.add_argument("--digits", type=int, default=600, help="digit images in the real run (end to end)")
    args = parser.parse_args()

    vectors, labels, probabilities, map_xy, ids = synthetic_run(args.n)
    started = time.perf_counter()
    # As a saved run files: with the per-cluster open-set tests (their members measured in the fit).
    predictor = Predictor(held_quantile=DEFAULT_HELD_QUANTILE).fit(vectors, labels, probabilities, map_xy, ids)
    fit_seconds = time.perf_counter() - started
    queries = vectors[np.random.default_rng(1).choice(args.n, 2000, replace=False)] + 0.02
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    singles = []
    for row in queries[:1000]:
        started = time.perf_counter()
        predictor.predict(row[None])
        singles.append(time.perf_counter() - started)
    started = time.perf_counter()
    batched = predictor.predict(queries[:1000])
    batch_seconds = time.perf_counter() - started
    assert len(batched.clusters) == 1000
    agreement = agreement_with_exact_search(predictor, vectors, queries)

    with tempfile.TemporaryDirectory() as tmp:
        root = imgcluster.write_digits(Path(tmp) / "digits", limit=args.digits)
        run = imgcluster.cluster(root, model="efficientnet-lite0")
        probe = run.images[0].path
        loaded = imgcluster.load_predictor(run.key, path=root)
        loaded.predict_files([probe])  # loads the model once
        files = []
        for image in run.images[:50]:
            started = time.perf_counter()
            loaded.predict_files([image.path])
            files.append(time.perf_counter() - started)
        cold = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "imgcluster.cli", "predict", probe, "--run", run.key, "--folder",
                            str(root), "--json"], check=True, capture_output=True)
            cold.append(time.perf_counter() - started)
        recipe_first, recipe_next = seed_recipe_path(root, run)

    print(f"predictor over {args.n:,} synthetic 512-d embeddings (index {predictor.describe()['index']}, "
          f"built in {fit_seconds:.1f} s)")
    print(f"  one embedding, median of 1,000 calls:  {statistics.median(singles) * 1000:8.2f} ms   (target <= 30 ms)")
    print(f"  batch of 1,000 embeddings:             {1000 / batch_seconds:8,.0f} points/s (target >= 5,000)")
    print(f"  same cluster as with exact search:     {agreement:8.1%}   (2,000 queries)")
    print(f"digits run of {run.record.n_images} images, model {run.record.model_name}:")
    print(f"  one image file end to end, median:     {statistics.median(files) * 1000:8.1f} ms   (seed: 1,000-2,000 ms)")
    print(f"  cold `imgcluster predict` process:     {min(cold):8.2f} s    (best of 3; target <= 5 s)")
    print(f"  seed recipe UMAP.transform + approximate_predict, first call in a process: {recipe_first:.1f} s, "
          f"next: {recipe_next * 1000:.0f} ms")
    print(f"command: python bench/predict.py --n {args.n} --digits {args.digits}")


def agreement_with_exact_search(predictor: Predictor, vectors: np.ndarray, queries: np.ndarray) -> float:
    """Share of queries filed into the same cluster as by a brute-force inner-product search."""
    import copy

    from imgcluster.neighbours import exact_index

    exact = copy.copy(predictor)
    exact.index_ = exact_index(vectors.shape[1])
    exact.index_.add(vectors)
    return float(np.mean(predictor.predict(queries).clusters == exact.predict(queries).clusters))


def seed_recipe_path(root: Path, run: imgcluster.Run) -> tuple[float, float]:
    """The seed's production path in a fresh process: fit UMAP+HDBSCAN, then time transform+predict."""
    code = f"""
import time, numpy as np, umap, hdbscan, imgcluster
ws = imgcluster.open_workspace({str(root)!r})
run = ws.run({run.key!r})
images = ws.images(status="ok")
x = ws.load_embeddings(run.model_id, [r.content_hash for r in images])
reducer = umap.UMAP(n_components=5, random_state=35).fit(x)
model = hdbscan.HDBSCAN(min_cluster_size=10, prediction_data=True).fit(reducer.embedding_)
for _ in range(2):
    started = time.perf_counter()
    hdbscan.approximate_predict(model, reducer.transform(x[:1]))
    print(time.perf_counter() - started)
"""
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(output[0]), float(output[1])


if __name__ == "__main__":
    main()
