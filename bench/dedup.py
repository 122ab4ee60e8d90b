"""How well does `imgcluster duplicates` find copies of real photos, per kind of copy and detector?

A labelled near-duplicate set made from the real photographs that ship in packages (scikit-image's
sample photos and scikit-learn's sample images): each photo's top-left and bottom-right quadrants
are the originals (42 different pictures; the two of one photo alike in texture and colour: hard
negatives), saved as JPEG (quality 95, 200-400 px). Not the other two quadrants: in the radially
symmetric photos (retina, colorwheel) they are near-mirror images of these, which the flip transform
counts as duplicates. Each original gets one copy per transform:

    exact     the same bytes, another file name
    reencode  JPEG again at quality 50-70
    resize    scaled to 40-75% of its side
    crop      a random 90% x 90% crop
    flip      mirrored left-right
    jitter    brightness, contrast and saturation each x0.85-1.15
    combined  crop 90% + flip + jitter + resize 75% + JPEG 70

Each detector runs alone (exact, perceptual, embedding) and all three together (the default), with
the default thresholds, through `imgcluster.duplicates` (embeddings from efficientnet-lite0).
Per transform: recall = copies put in the same group as their original; precision = of the pairs a
copy forms inside its group, those with an image of the same original.

    python bench/dedup.py [--model efficientnet-lite0] [--similarity S] [--hamming H] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

import imgcluster
from imgcluster.config import DETECTORS
from imgcluster.demo import _sample_photos

TRANSFORMS = ("exact", "reencode", "resize", "crop", "flip", "jitter", "combined")


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def crop90(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    w, h = int(width * 0.9), int(height * 0.9)
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return image.crop((left, top, left + w, top + h))


def jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhance(image).enhance(float(rng.uniform(0.85, 1.15)))
    return image


def make_copy(kind: str, original: Image.Image, original_bytes: bytes, rng: np.random.Generator) -> bytes:
    if kind == "exact":
        return original_bytes
    if kind == "reencode":
        return jpeg(original, int(rng.integers(50, 71)))
    if kind == "resize":
        scale = float(rng.uniform(0.4, 0.75))
        size = (max(8, int(original.width * scale)), max(8, int(original.height * scale)))
        return jpeg(original.resize(size, Image.Resampling.LANCZOS), 90)
    if kind == "crop":
        return jpeg(crop90(original, rng), 90)
    if kind == "flip":
        return jpeg(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 90)
    if kind == "jitter":
        return jpeg(jitter(original, rng), 90)
    if kind == "combined":
        edited = jitter(crop90(original, rng).transpose(Image.Transpose.FLIP_LEFT_RIGHT), rng)
        return jpeg(edited.resize((int(edited.width * 0.75), int(edited.height * 0.75)), Image.Resampling.LANCZOS), 70)
    raise ValueError(kind)


def build_set(folder: Path, seed: int) -> dict[str, tuple[str, str]]:
    """Write originals and copies; return path -> (original id, transform or 'original')."""
    rng = np.random.default_rng(seed)
    truth: dict[str, tuple[str, str]] = {}
    for name, photo in _sample_photos().items():
        photo.thumbnail((800, 800))
        half_w, half_h = photo.width // 2, photo.height // 2
        for q, (left, top) in enumerate([(0, 0), (half_w, half_h)]):
            original = photo.crop((left, top, left + half_w, top + half_h))
            source = f"{name}-q{q}"
            data = jpeg(original, 95)
            original = Image.open(io.BytesIO(data)).convert("RGB")
            for kind in ("original", *TRANSFORMS):
                path = folder / source / f"{kind}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data if kind == "original" else make_copy(kind, original, data, rng))
                truth[str(path.resolve())] = (source, kind)
    return truth


def score(found: imgcluster.Duplicates, truth: dict[str, tuple[str, str]]) -> dict[str, tuple[float, float]]:
    group_of = {image.path: g.group for g in found.groups for image in [g.keeper, *g.duplicates]}
    members = defaultdict(list)
    for path, group in group_of.items():
        members[group].append(path)
    originals = {source: path for path, (source, kind) in truth.items() if kind == "original"}
    result = {}
    for transform in TRANSFORMS:
        copies = [p for p, (_, kind) in truth.items() if kind == transform]
        hits = sum(1 for p in copies if p in group_of and group_of.get(originals[truth[p][0]]) == group_of[p])
        good = bad = 0
        for p in copies:
            for other in members.get(group_of.get(p, -1), []):
                if other != p:
                    good += truth[other][0] == truth[p][0]
                    bad += truth[other][0] != truth[p][0]
        result[transform] = (good / (good + bad) if good + bad else float("nan"), hits / len(copies))
    all_good = sum(truth[a][0] == truth[b][0] for m in members.values() for a in m for b in m if a < b)
    all_pairs = sum(len(m) * (len(m) - 1) // 2 for m in members.values())
    result["all pairs"] = (all_good / all_pairs if all_pairs else float("nan"), float("nan"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--similarity", type=float, default=imgcluster.DedupConfig().similarity)
    parser.add_argument("--hamming", type=int, default=imgcluster.DedupConfig().hamming)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the set here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="imgcluster-dedup-"))
    folder = root / "images"
    shutil.rmtree(root / "images", ignore_errors=True)
    truth = build_set(folder, args.seed)
    n_originals = sum(kind == "original" for _, kind in truth.values())
    print(f"{len(truth)} images: {n_originals} originals (2 quadrants of 21 sample photos) x {len(TRANSFORMS)} "
          f"transforms; model {args.model}, hamming <= {args.hamming}, similarity >= {args.similarity}")
    embed = imgcluster.EmbedConfig(model=args.model)
    rows = {}
    for detectors in [(d,) for d in DETECTORS] + [DETECTORS]:
        config = imgcluster.DedupConfig(detectors=detectors, hamming=args.hamming, similarity=args.similarity)
        started = time.perf_counter()
        found = imgcluster.duplicates(folder, config=config, embed_config=embed, workspace=root / "workspace")
        name = "default (all three)" if detectors == DETECTORS else detectors[0]
        rows[name] = score(found, truth)
        print(f"  {name}: {len(found.groups)} groups in {time.perf_counter() - started:.1f} s")
    columns = [*TRANSFORMS, "all pairs"]
    print("\nprecision / recall per transform (recall: copy grouped with its original)\n")
    print("| detector | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, result in rows.items():
        cells = [("n/a" if np.isnan(p) else f"{p:.2f}") + ("" if np.isnan(r) else f" / {r:.2f}")
                 for p, r in (result[c] for c in columns)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    default = rows["default (all three)"]
    ok = all(default[t][0] >= 0.95 and default[t][1] >= 0.95 for t in ("exact", "resize", "reencode"))
    print(f"\ndefault on exact, resize, re-encode: precision and recall >= 0.95: {'yes' if ok else 'NO'}")
    print("command: python " + " ".join(sys.argv))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
