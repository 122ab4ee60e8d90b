"""Is filing new images into a run (``imgcluster update``) much faster than a full re-fit?

Claim (issue 9): filing 1,000 new images into a 100k-image run is at least 50x faster than
re-fitting all 101k, with embedding excluded and included.

A synthetic collection (bench/cluster.py's 512-d unit vectors: 20 clusters, 10% background) is
written into a real workspace through the store: catalogue rows, embedding shards, a parent run
(default clustering of 100k) with its predictor. Then, side by side:

- update: the steps ``imgcluster update`` runs after scanning: load the parent's predictor, file
  the 1,000 new vectors, propose new clusters from held and unclustered images, save the derived run
  (its row, assignments and names, the predictor's new rows); then its report.html and
  clusters.csv/.parquet, timed apart (they are written for every image, old and new);
- re-fit: imgcluster's default clustering of all 101k vectors (UMAP on a 15k sample + HDBSCAN, the
  rest filed) and a new predictor, saved the same way as the update's run, outputs timed apart.

Both read the catalogue's records before the clock starts (``update`` has them from its scan).
The speed-up is printed for the saved run (the target) and with the outputs included.

"Embedding included" adds the time to embed the images each needs (1,000 vs 101,000), from the
efficientnet-lite0 throughput measured here on real JPEGs; scanning is not included in either.

    python bench/update.py [--n 100000] [--new 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import synthetic  # noqa: E402

import imgcluster  # noqa: E402
from imgcluster.api import living  # noqa: E402
from imgcluster.cluster.predictor import Predictor  # noqa: E402
from imgcluster.config import RunConfig  # noqa: E402
from imgcluster.run import filing  # noqa: E402
from imgcluster.run.outputs import write_outputs  # noqa: E402
from imgcluster.store import Assignments, Provenance, RunRecord, Workspace  # noqa: E402
from imgcluster.store.records import ScannedFile  # noqa: E402

MODEL_ID, MODEL_NAME = "bench-512", "bench"


def build_workspace(folder: Path, vectors: np.ndarray) -> Workspace:
    """A workspace whose catalogue holds one fake image per vector, each with its embedding."""
    ws = Workspace.open(folder)
    n = len(vectors)
    ws.save_scanned([ScannedFile(f"/bench/img-{i:07d}.jpg", 1000, 0, f"{i:064x}", "JPEG", 64, 64, "ok")
                     for i in range(n)])
    ws.register_model(MODEL_ID, MODEL_NAME, vectors.shape[1], {})
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        ws.save_batch(MODEL_ID, [f"{i:064x}" for i in range(start, stop)], vectors[start:stop])
    return ws


def ids_of(ws: Workspace, rows: range) -> np.ndarray:
    by_path = {r.path: r.id for r in ws.images()}
    return np.asarray([by_path[f"/bench/img-{i:07d}.jpg"] for i in rows], dtype=np.int64)


def save_fit(ws: Workspace, key: str, vectors: np.ndarray, image_ids: np.ndarray,
             config: RunConfig) -> dict[str, float]:
    """Fit the default clustering on ``vectors`` and save it as a run; seconds taken, outputs apart."""
    images = ws.images(ids=image_ids.tolist())
    started = time.perf_counter()
    reduction, clustering = imgcluster.fit_clusters(vectors, config.reduce, config.cluster)
    predictor = Predictor(seed=0).fit(vectors, clustering.labels, clustering.probabilities, reduction.map,
                                      image_ids)
    ws.write_predictor(key, *predictor.state())
    record = RunRecord.from_info(key, time.time(), "/bench", MODEL_ID, MODEL_NAME, len(vectors),
                                 int(len(set(clustering.labels.tolist()) - {-1})), config.to_dict(),
                                 {"clustering": clustering.params, "model": {"name": MODEL_NAME, "model_id": MODEL_ID}})
    assignments = Assignments(image_ids, clustering.labels, clustering.probabilities, reduction.map[:, 0],
                              reduction.map[:, 1], clustering.how)
    fitted = time.perf_counter()
    write_outputs(ws, record, images, assignments, [], {})
    outputs = time.perf_counter() - fitted
    ws.save_run(record, assignments)
    return {"run": time.perf_counter() - started - outputs, "outputs": outputs}


def timed_update(ws: Workspace, parent_key: str, new_vectors: np.ndarray, new_ids: np.ndarray) -> dict[str, float]:
    """The steps of ``update`` after scanning and embedding, timed one by one."""
    seconds: dict[str, float] = {}
    catalogue = {r.id: r for r in ws.images()}  # update has these from its scan
    started = time.perf_counter()
    parent = ws.run(parent_key)
    old = ws.assignments(parent_key)
    predictor = Predictor.from_state(*ws.read_predictor(parent_key))
    seconds["load"] = time.perf_counter() - started
    started = time.perf_counter()
    kept = np.ones(len(old.image_ids), dtype=bool)
    result = filing.file_new(predictor, old, kept, new_vectors, new_ids)
    seconds["file"] = time.perf_counter() - started
    started = time.perf_counter()
    proposed = filing.propose(ws, parent, RunConfig.from_dict(parent.config), result, predictor, len(new_ids),
                              group=living.dense_groups)
    seconds["propose"] = time.perf_counter() - started

    started = time.perf_counter()
    provenance = Provenance("update", parent.key, {"new_images": len(new_ids), "removed_images": 0,
                                                   "changed_images": 0})
    saved = living.save_derived(ws, parent, result, predictor, proposed, {}, "updated", provenance,
                                catalogue=catalogue)
    seconds["outputs"] = saved.record.timings["report"]
    seconds["save"] = time.perf_counter() - started - seconds["outputs"]
    seconds["filed"] = int(np.sum(result.how[result.first_new:] == "filed"))
    seconds["proposed"] = len(proposed)
    return seconds


def embed_rate(n: int = 96) -> float:
    """efficientnet-lite0 images/s through the real pipeline on JPEGs made here."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n):
            pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
            image = Image.fromarray(pixels).resize((320, 240), Image.Resampling.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            (folder / f"p{i:03d}.jpg").write_bytes(buffer.getvalue())
        imgcluster.embed_folder(folder, config=imgcluster.EmbedConfig(model="efficientnet-lite0"),
                                workspace=Path(tmp) / "warm", scan_config=imgcluster.ScanConfig())
        done = imgcluster.embed_folder(folder, config=imgcluster.EmbedConfig(model="efficientnet-lite0"),
                                       workspace=Path(tmp) / "ws")
        return done.n_embedded / done.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="images in the fitted run")
    parser.add_argument("--new", type=int, default=1_000, help="new images to file")
    args = parser.parse_args()
    total = args.n + args.new
    vectors, _ = synthetic(total)
    config = RunConfig()
    with tempfile.TemporaryDirectory() as tmp:
        ws = build_workspace(Path(tmp) / "ws", vectors)
        all_ids = ids_of(ws, range(total))
        print(f"fitting the parent run on {args.n:,} vectors (not timed) ...", flush=True)
        save_fit(ws, "parent", vectors[:args.n], all_ids[:args.n], config)
        print(f"updating it with {args.new:,} new vectors ...", flush=True)
        step = timed_update(ws, "parent", vectors[args.n:], all_ids[args.n:])
        update_s = step["load"] + step["file"] + step["propose"] + step["save"]
        print(f"re-fitting all {total:,} ...", flush=True)
        refit = save_fit(ws, "refit", vectors, all_ids, dataclasses.replace(config))
        ws.close()
    rate = embed_rate()
    print()
    print(f"{args.n:,}-image run + {args.new:,} new, synthetic 512-d; {os.cpu_count()} CPUs")
    print(f"  update:  {update_s:7.2f} s  (load {step['load']:.3f}, file {step['file']:.3f}, propose "
          f"{step['propose']:.3f}, save the run {step['save']:.3f}); {step['filed']:,} filed, "
          f"{step['proposed']} clusters proposed; then report + tables {step['outputs']:.2f} s")
    print(f"  re-fit:  {refit['run']:7.2f} s  (default clustering of {total:,} + predictor + save); "
          f"then report + tables {refit['outputs']:.2f} s")
    print(f"  speed-up, embedding excluded: {refit['run'] / update_s:6.1f}x  (target >= 50x); "
          f"with report + tables on both sides: "
          f"{(refit['run'] + refit['outputs']) / (update_s + step['outputs']):.1f}x")
    with_update = update_s + step["outputs"] + args.new / rate
    with_refit = refit["run"] + refit["outputs"] + total / rate
    print(f"  with embedding at {rate:.0f} images/s (efficientnet-lite0, measured here) and outputs: update "
          f"{with_update:,.1f} s, re-fit {with_refit:,.0f} s: {with_refit / with_update:6.1f}x")
    print(f"command: python bench/update.py --n {args.n} --new {args.new}")


if __name__ == "__main__":
    main()
