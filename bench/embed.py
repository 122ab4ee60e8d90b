"""Does embedding run at the speed of the model itself, and how much faster than the seed's loop?

Side by side, in one run, on N real-photo JPEGs (crops of the scikit-image / scikit-learn sample
photos, 224 px, written once), for each model:
- model only: the forward pass on already decoded and preprocessed tensors, in batches;
- pipeline: `imgcluster.embed` on the files into a fresh workspace (decode in threads while the
  model runs, thumbnails, per-batch commits to the store);
- naive loop: open, preprocess and embed one image at a time (the seed's `prepare_pil_image` +
  `encode_image` per image).
Models: efficientnet-lite0 (bundled) and a CLIP ViT-B/32-shaped model (transformers' default
CLIPConfig is ViT-B/32; random weights, which time the same as trained ones), saved with
`save_pretrained` to a temp folder. Then, in a child process, the peak RSS while the pipeline embeds
`--rss-images` files (the issue asks for 20,000: `--rss-images 20000`, ~17 min here).

    python bench/embed.py [--n 512] [--batch-size N] [--models efficientnet-lite0,clip-b32]
                          [--rss-images 2000] [--rss-model efficientnet-lite0] [--device cuda --side 500]

On CUDA (``--device cuda``) the pipeline decodes JPEGs on the GPU when torchvision's nvJPEG works
(said in the output), and the share of throughput lost to decoding and input is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.demo import write_photo_crops
from imgcluster.embed import load_model
from imgcluster.scan import load_rgb


def photo_jpegs(folder: Path, n: int, side: int = 224) -> list[Path]:
    """N ``side``-px JPEG crops of the 21 sample photos."""
    images = write_photo_crops(folder, per_photo=-(-n // 21), side=side)
    return sorted(images.rglob("*.jpg"))[:n]


def clip_b32_folder(folder: Path) -> Path:
    """A randomly initialised CLIP with the ViT-B/32 configuration, saved like a downloaded one."""
    from transformers import CLIPConfig, CLIPModel

    if not (folder / "config.json").exists():
        CLIPModel(CLIPConfig()).save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps({
            "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "size": {"shortest_edge": 224},
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3}))
    return folder


def model_only(embedder, files: list[Path], batch_size: int | None) -> float:
    """Images/s of the forward pass alone on pre-decoded, preprocessed batches."""
    batch_size = batch_size or embedder.batch_size
    tensors = np.stack([embedder.preprocess(load_rgb(str(f), min_side=embedder.input_size)) for f in files])
    embedder.embed(tensors[:batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(tensors), batch_size):
        embedder.embed(tensors[start:start + batch_size])
    return len(files) / (time.perf_counter() - started)


def pipeline(model: str, files: list[Path], batch_size: int | None, workspace: Path, device: str = "cpu") -> float:
    """Images/s of `imgcluster.embed` from the files (the scan is done first and not timed)."""
    ws = imgcluster.open_workspace(workspace=workspace)
    try:
        found = imgcluster.scan(files[0].parent.parent, workspace=ws)
        chosen = [r for r in found.images if Path(r.path) in set(files)]
        config = imgcluster.EmbedConfig(model=model, batch_size=batch_size, device=device)
        warm = min(32, len(chosen) // 4)  # a small --n must still leave images to time
        imgcluster.embed(chosen[:warm], workspace=ws, config=config)  # loads the model, warms up
        started = time.perf_counter()
        imgcluster.embed(chosen, workspace=ws, config=config)
        return (len(chosen) - warm) / (time.perf_counter() - started)
    finally:
        ws.close()


def naive_loop(embedder, files: list[Path]) -> float:
    """Images/s of open → preprocess → embed, one image at a time."""
    from PIL import Image

    started = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            embedder.embed(embedder.preprocess(image.convert("RGB"))[None])
    return len(files) / (time.perf_counter() - started)


def peak_rss_child(model: str, n: int, batch_size: int | None, folder: Path) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of a fresh process that embeds ``n`` JPEGs into a new workspace.

    Peak RSS is the process's VmHWM: Linux carries ``ru_maxrss`` over from the parent across exec,
    so getrusage in a child would report this (larger) process's peak."""
    code = f"""
import resource, time, imgcluster
from pathlib import Path
files = sorted(Path({str(folder)!r}).rglob("*.jpg"))[:{n}]
ws = imgcluster.open_workspace(workspace={str(folder / "rss-workspace")!r})
found = imgcluster.scan({str(folder)!r}, workspace=ws)
started = time.perf_counter()
imgcluster.embed(found, workspace=ws, config=imgcluster.EmbedConfig(model={model!r}, batch_size={batch_size}))
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(hwm.split()[1]) / 1024, time.perf_counter() - started)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="JPEGs per throughput measurement")
    parser.add_argument("--batch-size", type=int, default=None, help="default: each model's own choice")
    parser.add_argument("--models", default="efficientnet-lite0,clip-b32")
    parser.add_argument("--rss-images", type=int, default=2000, help="JPEGs for the peak-RSS run (0 skips it)")
    parser.add_argument("--rss-model", default="efficientnet-lite0")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    parser.add_argument("--side", type=int, default=224, help="JPEG size in px (the GPU target names 500x375)")
    args = parser.parse_args()
    from imgcluster.embed.gpu_decode import gpu_decoder_for
    import torch

    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"batch {args.batch_size or 'per model'}, {args.n} JPEGs of {args.side} px, device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = photo_jpegs(root / "photos", args.n, args.side)
        for name in args.models.split(","):
            model = str(clip_b32_folder(root / "clip-b32")) if name == "clip-b32" else name
            embedder = load_model(model, device=args.device)
            decode = "nvJPEG on the GPU" if gpu_decoder_for(embedder) else "Pillow in worker threads"
            alone = model_only(embedder, files, args.batch_size)
            piped = pipeline(model, files, args.batch_size, root / f"ws-{name}", args.device)
            naive = naive_loop(embedder, files[: max(64, args.n // 4)])
            print(f"{name:>18} (batch {args.batch_size or embedder.batch_size}): model only {alone:6.1f} img/s | pipeline {piped:6.1f} img/s "
                  f"({piped / alone:.2f}x model only; target >= 0.9) | naive loop {naive:6.1f} img/s "
                  f"(pipeline {piped / naive:.1f}x; target >= 3); JPEG decode: {decode}, "
                  f"{max(0.0, 1 - piped / alone):.0%} of the model's rate lost to decoding and input", flush=True)
            del embedder
        if args.rss_images:
            rss_files = photo_jpegs(root / "rss", args.rss_images)
            peak, seconds = peak_rss_child(args.rss_model, len(rss_files), args.batch_size, root / "rss")
            print(f"peak RSS embedding {len(rss_files):,} JPEGs with {args.rss_model}: {peak:,.0f} MiB "
                  f"(target < 2,048 MiB at 20,000), {len(rss_files) / seconds:.1f} img/s")
    print(f"own peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print("command: python bench/embed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
