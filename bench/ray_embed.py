"""How long does `imgcluster embed --engine ray` take against one process, on this machine?

Side by side, in one run, on N drawn 64-px PNGs (as tests/embed/test_ray_engine.py draws them), each
pass into a fresh workspace, with efficientnet-lite0:
- one process: `imgcluster.embed_folder` (decode threads + the model in this process);
- Ray, as the command runs it: a local Ray started for the pass and stopped after (`--engine ray`
  without `--address`), WORKERS actors each loading the model;
- Ray already running: the same pass on a Ray started beforehand (`--address` to a running cluster),
  with the start-up timed on its own.
Prints the seconds of each (median of --repeats), the ratios, and this command line.

    python bench/ray_embed.py [--n 200] [--workers 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import imgcluster
from imgcluster.config import RayConfig

MODEL = "efficientnet-lite0"


def draw_images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 256, 3)))
        x, y, size = (int(v) for v in rng.integers(0, 40, 3))
        ImageDraw.Draw(image).ellipse([x, y, x + size + 8, y + size + 8],
                                      fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        image.save(folder / f"image-{i:04d}.png")
    return folder


def timed(images: Path, workspace: Path, **engine) -> float:
    started = time.perf_counter()
    done = imgcluster.embed_folder(images, config=imgcluster.EmbedConfig(model=MODEL), workspace=workspace, **engine)
    seconds = time.perf_counter() - started
    assert done.n_embedded == len(list(images.iterdir())), done
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray_config = RayConfig(workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = draw_images(root / "images", args.n)
        one, started_ray, cold, warm = [], [], [], []
        for repeat in range(args.repeats):
            one.append(timed(images, root / f"one-{repeat}"))
            cold.append(timed(images, root / f"cold-{repeat}", engine="ray", ray_config=ray_config))
            started = time.perf_counter()
            ray.init(num_cpus=max(os.cpu_count() or 1, args.workers), include_dashboard=False, log_to_driver=False)
            started_ray.append(time.perf_counter() - started)
            warm.append(timed(images, root / f"warm-{repeat}", engine="ray", ray_config=ray_config))
            ray.shutdown()
    one_s, cold_s, init_s, warm_s = (statistics.median(x) for x in (one, cold, started_ray, warm))
    print(f"{args.n} images, {MODEL}, {os.cpu_count()} cores, 1-min load average {os.getloadavg()[0]:.1f}, "
          f"median of {args.repeats}:")
    print(f"  one process                              {one_s:6.1f} s  {args.n / one_s:6.1f} images/s")
    print(f"  --engine ray, local Ray started for it   {cold_s:6.1f} s  {args.n / cold_s:6.1f} images/s  "
          f"({cold_s / one_s:.2f}x one process)")
    print(f"  --engine ray on a running Ray            {warm_s:6.1f} s  {args.n / warm_s:6.1f} images/s  "
          f"({warm_s / one_s:.2f}x one process; starting that Ray took {init_s:.1f} s)")
    print(f"  {args.workers} workers; command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
