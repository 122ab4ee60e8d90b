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

With ``--backends torch,onnxruntime,openvino`` (issue 29; ``NAME:float32`` or ``NAME:int8`` forces a
precision, a bare name takes the backend's own choice) it compares inference backends instead, on
the CPU, side by side in one process: each model is loaded once per backend (exporting it on first
use, a one-time cost printed apart), then every round embeds the same JPEG files into a fresh
workspace through the real pipeline with each backend in turn (interleaved, the order rotated each
round, so a change in the machine's load touches every backend alike); the median images/s and
its ratio to torch are printed with every round's figure, and each backend's vectors are compared
with torch float32's (cosine, median and lowest). Then the default clustering's NMI on the digits
demo and the photo crops per backend (efficientnet-lite0), and the peak RSS of a fresh process
embedding ``--rss-images`` files per backend.

    python bench/embed.py --backends torch,onnxruntime,onnxruntime:float32,openvino,openvino:float32 \
                          [--rounds 3] [--n 512] [--n-clip 128] [--quality digits,photos] [--rss-images 2000]

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


def peak_rss_child(model: str, n: int, batch_size: int | None, folder: Path, backend: str = "torch",
                   precision: str = "auto") -> tuple[float, float]:
    """(peak RSS MiB, seconds) of a fresh process that embeds ``n`` JPEGs into a new workspace.

    Peak RSS is the process's VmHWM: Linux carries ``ru_maxrss`` over from the parent across exec,
    so getrusage in a child would report this (larger) process's peak."""
    code = f"""
import resource, time, imgcluster
from pathlib import Path
files = sorted(Path({str(folder)!r}).rglob("*.jpg"))[:{n}]
ws = imgcluster.open_workspace(workspace={str(folder / f"rss-workspace-{backend}-{precision}")!r})
found = imgcluster.scan({str(folder)!r}, workspace=ws)
started = time.perf_counter()
imgcluster.embed(found, workspace=ws, config=imgcluster.EmbedConfig(model={model!r}, batch_size={batch_size},
                 backend={backend!r}, precision={precision!r}, device="cpu"))
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(hwm.split()[1]) / 1024, time.perf_counter() - started)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def parse_backends(text: str) -> list[tuple[str, str]]:
    """``torch,onnxruntime:float32`` → [(torch, auto), (onnxruntime, float32)]; torch always first."""
    variants = [(name, precision or "auto") for name, _, precision in (item.partition(":") for item in text.split(","))]
    return [("torch", "auto")] + [v for v in variants if v[0] != "torch"]


def label(variant: tuple[str, str], embedder=None) -> str:
    name, precision = variant
    if embedder is not None and hasattr(embedder, "precision"):
        precision = embedder.precision
    return name if name == "torch" else f"{name} {precision}"


def compare_backends(name: str, model: str, files: list[Path], variants: list[tuple[str, str]], rounds: int,
                     batch_size: int | None, root: Path) -> dict[str, float]:
    """Interleaved pipeline throughput and cosine to torch for each backend; returns median img/s by label."""
    from imgcluster.embed.onnx_export import cosines
    from imgcluster.embed.runner import embed_records

    embedders = {}
    for variant in variants:
        started = time.perf_counter()
        embedder = load_model(model, device="cpu", backend=variant[0], precision=variant[1])
        embedders[label(variant, embedder)] = embedder
        print(f"{name:>18} {label(variant, embedder):<22} loaded in {time.perf_counter() - started:5.1f} s "
              f"(an export, once per machine, included when not cached)", flush=True)
    for embedder in embedders.values():  # first calls allocate and plan: not what a long run sees
        embedder.embed(np.stack([embedder.preprocess(load_rgb(str(f), min_side=embedder.input_size))
                                 for f in files[:batch_size or embedder.batch_size]]))
    rates: dict[str, list[float]] = {key: [] for key in embedders}
    vectors: dict[str, np.ndarray] = {}
    keys = list(embedders)
    for round_ in range(rounds):
        for key in keys[round_ % len(keys):] + keys[:round_ % len(keys)]:
            embedder = embedders[key]
            ws = imgcluster.open_workspace(workspace=root / f"ws-{name}-{round_}-{key.replace(' ', '-')}")
            try:
                found = imgcluster.scan(files[0].parent.parent, workspace=ws)
                chosen = sorted((r for r in found.images if Path(r.path) in set(files)), key=lambda r: r.path)
                config = imgcluster.EmbedConfig(batch_size=batch_size)
                started = time.perf_counter()
                embed_records(chosen, embedder, ws, config)
                rates[key].append(len(chosen) / (time.perf_counter() - started))
                if round_ == 0:
                    vectors[key] = ws.load_embeddings(embedder.model_id, [r.content_hash for r in chosen])
            finally:
                ws.close()
    medians = {key: float(np.median(values)) for key, values in rates.items()}
    for key, values in rates.items():
        similarity = cosines(vectors[key], vectors["torch"])
        print(f"{name:>18} {key:<22} pipeline {medians[key]:6.1f} img/s ({medians[key] / medians['torch']:.2f}x torch)"
              f"  rounds {', '.join(f'{v:.1f}' for v in values)} | cosine to torch float32 median "
              f"{np.median(similarity):.4f}, lowest {similarity.min():.4f}", flush=True)
    return medians


def compare_quality(datasets: list[str], variants: list[tuple[str, str]], root: Path, seeds: int = 1) -> None:
    """NMI of the default clustering (efficientnet-lite0) per backend, on each labelled demo set,
    averaged over seeds 0 .. ``seeds``-1 (one seed's NMI moves by a few hundredths with the seed)."""
    for dataset in datasets:
        if dataset == "digits":
            folder = imgcluster.write_digits(root / "digits")
        else:
            folder = imgcluster.write_photo_crops(root / "photo-crops")
        labels = folder.parent / "labels.csv"
        scores: dict[str, list[float]] = {}
        for seed in range(seeds):
            for variant in variants:
                overrides = {"embed": {"backend": variant[0], "precision": variant[1], "device": "cpu"},
                             "reduce": {"seed": seed}, "cluster": {"seed": seed}}
                run = imgcluster.cluster(folder, model="efficientnet-lite0", workspace=root / f"ws-quality-{dataset}",
                                         overrides=overrides)
                model = run.record.info.get("model", {})
                key = label((variant[0], model.get("precision", variant[1])))
                scores.setdefault(key, []).append(
                    imgcluster.evaluate(labels, run.key, workspace=root / f"ws-quality-{dataset}")["all"]["nmi"])
        mean = {key: float(np.mean(values)) for key, values in scores.items()}
        print(f"{dataset:>18} default clustering NMI, mean of seeds 0-{seeds - 1}: "
              + " | ".join(f"{key} {mean[key]:.3f} ({mean[key] - mean['torch']:+.3f}; "
                           f"{', '.join(f'{v:.3f}' for v in values)})" for key, values in scores.items()),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="JPEGs per throughput measurement")
    parser.add_argument("--batch-size", type=int, default=None, help="default: each model's own choice")
    parser.add_argument("--models", default="efficientnet-lite0,clip-b32")
    parser.add_argument("--rss-images", type=int, default=2000, help="JPEGs for the peak-RSS run (0 skips it)")
    parser.add_argument("--rss-model", default="efficientnet-lite0")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    parser.add_argument("--side", type=int, default=224, help="JPEG size in px (the GPU target names 500x375)")
    parser.add_argument("--backends", default=None, help="compare these backends instead (see the docstring)")
    parser.add_argument("--rounds", type=int, default=3, help="with --backends: interleaved rounds")
    parser.add_argument("--n-clip", type=int, default=128, help="with --backends: JPEGs per round for clip-b32")
    parser.add_argument("--quality", default="digits,photos", help="with --backends: NMI on these ('' skips)")
    parser.add_argument("--quality-seeds", type=int, default=1, help="with --backends: NMI averaged over seeds")
    args = parser.parse_args()
    if args.backends:
        backends_main(args)
        return
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


def backends_main(args: argparse.Namespace) -> None:
    import onnxruntime
    import openvino
    import torch

    variants = parse_backends(args.backends)
    print(f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the start), torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__.split('-')[0]}; backends "
          f"interleaved over {args.rounds} rounds; efficientnet-lite0 on {args.n} JPEGs, clip-b32 on {args.n_clip}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in filter(None, args.models.split(",")):  # --models '' measures quality and memory only
            n = args.n_clip if name == "clip-b32" else args.n
            model = str(clip_b32_folder(root / "clip-b32")) if name == "clip-b32" else name
            files = photo_jpegs(root / f"photos-{n}", n, args.side)
            compare_backends(name, model, files, variants, args.rounds, args.batch_size, root)
        if args.quality:
            compare_quality(args.quality.split(","), [v for v in variants if v[1] == "auto"], root,
                            args.quality_seeds)
        if args.rss_images:
            rss_files = photo_jpegs(root / "rss", args.rss_images)
            for name in args.rss_model.split(","):
                model = str(clip_b32_folder(root / "clip-b32")) if name == "clip-b32" else name
                for variant in variants:
                    peak, seconds = peak_rss_child(model, len(rss_files), args.batch_size, root / "rss", *variant)
                    print(f"peak RSS embedding {len(rss_files):,} JPEGs with {name}, {label(variant)}: {peak:,.0f} MiB, "
                          f"{len(rss_files) / seconds:.1f} img/s", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print("command: python bench/embed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
