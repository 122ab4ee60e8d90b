"""How long does each stage of the pipeline take per image on this machine?

Times scan, embed, reduce, cluster and report through the public API in one process, on
scikit-learn's 1,797 digit scans (plus generated coloured shapes beyond that), and prints
seconds and images/s per stage. Reduce runs twice: the first call loads numba's compiled code from
the on-disk cache (or compiles it, on a machine's first run; see bench/first_run.py).
Then times a whole ``imgcluster.cluster()`` call twice on the same folder, embeddings cached.

    python bench/pipeline.py --n 1797
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import imgcluster
from imgcluster.run.metrics import package_versions

DIGITS = 1797


def write_images(dest: Path, n: int) -> Path:
    """The first ``n`` digit scans, topped up with random coloured shapes past 1,797; returns the folder."""
    folder = imgcluster.write_digits(dest, limit=n)
    rng = np.random.default_rng(0)
    (folder / "shapes").mkdir(exist_ok=True)
    for index in range(n - DIGITS):
        image = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(180, 256, 3)))
        draw = ImageDraw.Draw(image)
        box = sorted(rng.integers(4, 60, 2).tolist()), sorted(rng.integers(4, 60, 2).tolist())
        xy = (box[0][0], box[1][0], box[0][1] + 2, box[1][1] + 2)
        fill = tuple(int(v) for v in rng.integers(0, 180, 3))
        (draw.ellipse if index % 2 else draw.rectangle)(xy, fill=fill)
        image.save(folder / "shapes" / f"shape-{index:06d}.png")
    return folder


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DIGITS, help="number of images (default: all 1,797 digits)")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the model's own choice")
    parser.add_argument("--keep", action="store_true", help="keep the temporary image folder")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    import torch

    # Other processes on the machine skew every figure; print the load so a reader can tell.
    load_at_start = os.getloadavg()[0]
    dest = Path(tempfile.mkdtemp(prefix="imgcluster-bench-"))
    try:
        folder = write_images(dest, args.n)
        rows: list[tuple[str, float, int]] = []  # stage, seconds, images

        with imgcluster.open_workspace(folder) as ws:
            found, seconds = timed(lambda: imgcluster.scan(folder, workspace=ws))
            rows.append(("scan", seconds, len(found.images)))
            config = imgcluster.EmbedConfig(model=args.model, batch_size=args.batch_size)
            emb, seconds = timed(lambda: imgcluster.embed(found, workspace=ws, config=config))
            n = len(emb.images)
            rows.append(("embed (incl. model load)", seconds, n))
        red, seconds = timed(lambda: imgcluster.reduce(emb.vectors))
        rows.append(("reduce, 1st call (incl. numba load)", seconds, n))
        red, seconds = timed(lambda: imgcluster.reduce(emb.vectors))
        rows.append(("reduce, 2nd call", seconds, n))
        clu, seconds = timed(lambda: imgcluster.cluster_points(red.space))
        rows.append(("cluster", seconds, n))

        run, seconds = timed(lambda: imgcluster.cluster(folder, model=args.model))
        rows.append(("cluster() whole, embeddings cached", seconds, run.record.n_images))
        _, seconds = timed(lambda: imgcluster.report(run.key, workspace=run.workspace))
        rows.append(("report", seconds, run.record.n_images))
        rerun, seconds = timed(lambda: imgcluster.cluster(folder, model=args.model))
        rows.append(("cluster() whole, re-run", seconds, rerun.record.n_images))
    finally:
        if args.keep:
            print(f"images kept in {dest}")
        else:
            shutil.rmtree(dest, ignore_errors=True)

    command = f"python bench/pipeline.py --n {args.n} --model {args.model}" + (
        f" --batch-size {args.batch_size}" if args.batch_size else "")
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "platform": platform.platform(), "processor": platform.processor() or platform.machine(), "load_at_start": load_at_start}
    model = {key: emb.model[key] for key in ("name", "model_id", "device")}
    inner = rerun.record.timings
    clusters = len(set(clu.labels.tolist()) - {-1})

    print(f"{'stage':<38}{'seconds':>10}{'images/s':>12}")
    for stage, seconds, count in rows:
        print(f"{stage:<38}{seconds:>10.2f}{count / seconds:>12.1f}")
    print("inside the re-run: " + ", ".join(f"{k} {v:.2f}s" for k, v in inner.items()))
    print(f"images: {n} embedded of {args.n} written; {clusters} clusters, "
          f"{int((clu.labels == -1).sum())} unclustered")
    print(f"model: {model['name']} ({model['model_id']}) on {model['device']}, batch size {args.batch_size or 'the model default'}")
    print(f"machine: {machine['cpus']} CPUs, {machine['torch_threads']} torch threads, {machine['platform']}, "
          f"1-min load average {load_at_start:.2f} at start")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items()))
    print(f"command: {command}")

    if args.json:
        figures = {"n": n, "model": model, "batch_size": args.batch_size, "machine": machine,
                   "versions": package_versions(), "command": command, "inside_rerun": inner,
                   "stages": [{"stage": s, "seconds": round(t, 4), "images_per_s": round(c / t, 2)}
                              for s, t, c in rows]}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
