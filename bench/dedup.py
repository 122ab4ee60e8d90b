"""How well does `imgcluster duplicates` find copies of real photos, per kind of copy and detector,
against today's version, and what does it cost per 1,000 images and at 100,000?

A labelled near-duplicate set made from the real photographs that ship in packages (scikit-image's
sample photos and scikit-learn's sample images): each photo's top-left and bottom-right quadrants
are the originals (42 different pictures; the two of one photo alike in texture and colour: hard
negatives, the "halves" column), saved as JPEG (quality 95, 200-400 px). Not the other two
quadrants: in the radially symmetric photos (retina, colorwheel) they are near-mirror images of
these, which the flip transform counts as duplicates. Each original gets one copy per transform:

    exact     the same bytes, another file name
    reencode  JPEG again at quality 50-70
    resize    scaled to 40-75% of its side
    crop      a random 90% x 90% crop
    flip      mirrored left-right
    jitter    brightness, contrast and saturation each x0.85-1.15
    combined  crop 90% + flip + jitter + resize 75% + JPEG 70

Rows: today's default (``--baseline``, the version before mirror and crops detection, run from
``git archive`` of that commit in a child process on the same files), each detector alone and the
default (all four) with OpenCV, and the default without OpenCV (verification off), all through
`imgcluster.duplicates` (embeddings from efficientnet-lite0). Per transform: recall = copies put in
the same group as their original; precision = of the pairs a copy forms inside its group, those
with an image of the same original; "halves" = photos whose two quadrants (or their copies) ended
in one group (want 0 of 21).

Timing: the default on a fresh workspace, per stage, per 1,000 images. ``--scale N`` also times the
duplicate finder itself at N images (hash sets and vectors made up: N distinct pictures, 1% of them
with a planted crop-like copy; geometric verification replaced by a stub and costed separately at
the per-pair time measured on the photos), because 100,000 real files are not at hand.

    python bench/dedup.py [--model efficientnet-lite0] [--similarity S] [--hamming H] [--seed 0]
                          [--baseline REV | --no-baseline] [--scale 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image, ImageEnhance

import imgcluster
from imgcluster.config import DETECTORS
from imgcluster.demo import sample_photos
from imgcluster.geometry import opencv_available

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
    for name, photo in sample_photos().items():
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


def group_map(found: imgcluster.Duplicates) -> dict[str, int]:
    """path -> group id, for the images in a group."""
    return {image.path: g.group for g in found.groups for image in [g.keeper, *g.duplicates]}


def score(group_of: dict[str, int], truth: dict[str, tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """Per transform (precision, recall); "all pairs" (precision, nan); "halves" (photos joined, nan)."""
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
    photo = lambda path: truth[path][0].rsplit("-q", 1)[0]  # noqa: E731
    joined = {photo(a) for m in members.values() for a in m for b in m if photo(a) == photo(b)
              and truth[a][0] != truth[b][0]}
    result["halves"] = (float(len(joined)), float("nan"))
    return result


# The last commit before mirror and crops detection (issue 30): "today" in the table.
BASELINE = "afe06f9"
_BASELINE_SCRIPT = """
import json, sys
import imgcluster
found = imgcluster.duplicates(sys.argv[1], embed_config=imgcluster.EmbedConfig(model=sys.argv[3]),
                              workspace=sys.argv[2])
print(json.dumps({image.path: g.group for g in found.groups for image in [g.keeper, *g.duplicates]}))
"""


def run_baseline(revision: str, folder: Path, root: Path, model: str) -> dict[str, int] | None:
    """Groups found by ``revision``'s default, in a child process on its own source tree; None when
    this is not a git checkout holding that commit."""
    repo = Path(__file__).resolve().parent.parent
    source = root / f"baseline-{revision}"
    archive = subprocess.run(["git", "-C", str(repo), "archive", revision, "src"], capture_output=True)
    if archive.returncode != 0:
        print(f"  today ({revision}): not measured: {archive.stderr.decode().strip()}")
        return None
    source.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    env = {**os.environ, "PYTHONPATH": str(source / "src")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _BASELINE_SCRIPT, str(folder), str(root / "workspace-baseline"),
                           model], capture_output=True, text=True, env=env, check=True)
    print(f"  today ({revision}): default in {time.perf_counter() - started:.1f} s (child process)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed_default(folder: Path, root: Path, embed: imgcluster.EmbedConfig,
                  config: imgcluster.DedupConfig) -> tuple[imgcluster.Duplicates, dict[str, float]]:
    """The default on a fresh workspace, with the seconds each stage took."""
    workspace = root / "workspace-timed"
    shutil.rmtree(workspace, ignore_errors=True)
    last: dict[str, float] = {}
    first: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        first.setdefault(stage, now)
        last[stage] = now

    started = time.perf_counter()
    found = imgcluster.duplicates(folder, config=config, embed_config=embed, workspace=workspace, progress=progress)
    total = time.perf_counter() - started
    stages = sorted(first, key=first.get)
    seconds = {}
    for stage, following in zip(stages, [*stages[1:], None]):
        seconds[stage] = (first[following] if following else started + total) - first[stage]
    seconds["total"] = total
    return found, seconds


def synthetic_timing(n: int, seed: int, verify_seconds: float) -> None:
    """Time DuplicateFinder.fit at n made-up images: distinct random hash sets (crops within a few
    bits of their picture, as measured on photos), 1% with a crop-like copy, random unit vectors."""
    from imgcluster.dedup import N_HASHES, UNVERIFIABLE, DuplicateFinder

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, 1, 8), dtype=np.uint8)
    flips = (rng.random((n, N_HASHES, 64)) < 0.06)  # ~4 of 64 bits: crops and mirror near the picture
    flips[:, 1] = rng.random((n, 64)) < 0.5  # the mirror's hash: unrelated bits
    sets = base ^ np.packbits(flips, axis=2)
    copies = rng.choice(n, size=n // 100, replace=False)
    sets[copies[: len(copies) // 2]] = sets[copies[len(copies) // 2:]] ^ np.packbits(
        rng.random((len(copies) // 2, N_HASHES, 64)) < 0.1, axis=2)  # ~6 bits away: a crops candidate
    hexes = [row.tobytes().hex() for row in sets]
    vectors = rng.standard_normal((n, 1280)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    calls = [0]
    checked = set()

    def verify(a: int, b: int) -> str:
        calls[0] += 1
        checked.add((a, b))
        return UNVERIFIABLE

    started = time.perf_counter()
    finder = DuplicateFinder().fit([f"h{i}" for i in range(n)], hexes, vectors, verify=verify)
    seconds = time.perf_counter() - started
    half = len(copies) // 2
    planted = [tuple(sorted((int(a), int(b)))) for a, b in zip(copies[:half], copies[half:])]
    found = sum(p in checked or finder.group_[p[0]] == finder.group_[p[1]] >= 0 for p in planted)
    print(f"\nfinder at {n:,} made-up images: {seconds:.1f} s (hash candidates, embedding join, groups); "
          f"{found} of {len(planted)} planted copies checked or linked; "
          f"{finder.candidates_['crops']:,} crops candidates, {calls[0]:,} verifications stubbed, which at "
          f"{1000 * verify_seconds:.1f} ms each (measured above) add {calls[0] * verify_seconds:.0f} s; at most "
          f"4 candidates per image bound them by {4 * n:,} ({4 * n * verify_seconds / 60:.0f} min) whatever the "
          f"collection holds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--similarity", type=float, default=imgcluster.DedupConfig().similarity)
    parser.add_argument("--hamming", type=int, default=imgcluster.DedupConfig().hamming)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose default is 'today'")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--scale", type=int, default=0, help="also time the finder at this many made-up images")
    parser.add_argument("--keep", type=Path, help="write the set here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="imgcluster-dedup-"))
    folder = root / "images"
    shutil.rmtree(root / "images", ignore_errors=True)
    truth = build_set(folder, args.seed)
    n_originals = sum(kind == "original" for _, kind in truth.values())
    print(f"{len(truth)} images: {n_originals} originals (2 quadrants of 21 sample photos) x {len(TRANSFORMS)} "
          f"transforms; model {args.model}, hamming <= {args.hamming}, similarity >= {args.similarity}; "
          f"OpenCV {'installed' if opencv_available() else 'NOT installed (crops rows link nothing)'}")
    embed = imgcluster.EmbedConfig(model=args.model)
    rows = {}
    if not args.no_baseline:
        today = run_baseline(args.baseline, folder, root, args.model)
        if today is not None:
            rows[f"today ({args.baseline}): default"] = score({str(Path(p).resolve()): g for p, g in today.items()},
                                                             truth)
    config = imgcluster.DedupConfig(hamming=args.hamming, similarity=args.similarity)
    for detectors in [(d,) for d in DETECTORS]:
        single = dataclasses.replace(config, detectors=detectors)
        started = time.perf_counter()
        found = imgcluster.duplicates(folder, config=single, embed_config=embed, workspace=root / "workspace")
        rows[detectors[0]] = score(group_map(found), truth)
        print(f"  {detectors[0]}: {len(found.groups)} groups in {time.perf_counter() - started:.1f} s")
    timed, seconds = timed_default(folder, root, embed, config)
    rows["**default (all four)**"] = score(group_map(timed), truth)
    print(f"  default: {len(timed.groups)} groups; candidates {timed.candidates}; links {timed.links}")
    with mock.patch("imgcluster.api.search.opencv_available", return_value=False):
        found = imgcluster.duplicates(folder, config=config, embed_config=embed, workspace=root / "workspace")
    rows["default without OpenCV"] = score(group_map(found), truth)
    columns = [*TRANSFORMS, "all pairs", "halves"]
    print("\nprecision / recall per transform (recall: copy grouped with its original); all pairs: precision; "
          "halves: photos whose two quadrants were joined (of 21)\n")
    print("| detector | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, result in rows.items():
        cells = [("n/a" if np.isnan(p) else f"{p:.2f}") + ("" if np.isnan(r) else f" / {r:.2f}")
                 for p, r in (result[c] for c in columns[:-1])]
        cells.append(f"{int(result['halves'][0])}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    default = rows["**default (all four)**"]
    checks = {"exact, resize, re-encode >= 0.95": all(default[t][0] >= 0.95 and default[t][1] >= 0.95
                                                      for t in ("exact", "resize", "reencode")),
              "flip recall >= 0.95": default["flip"][1] >= 0.95, "crop recall >= 0.90": default["crop"][1] >= 0.90,
              "combined recall >= 0.80": default["combined"][1] >= 0.80,
              "precision over all pairs >= 0.98": default["all pairs"][0] >= 0.98,
              "no halves joined": default["halves"][0] == 0}
    print("\ndefault: " + "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items()))
    n = len(truth)
    per_stage = ", ".join(f"{stage} {value:.1f} s ({1000 * value / n:.1f} s per 1,000)"
                          for stage, value in seconds.items())
    print(f"\ntime, default on a fresh workspace, {n} images: {per_stage}")
    verified = timed.candidates.get("verified", 0)
    verify_seconds = seconds.get("verify", 0.0) / max(1, verified)
    print(f"verification: {verified} candidate pairs checked, {1000 * verify_seconds:.1f} ms each "
          "(the features of both images included)")
    if args.scale:
        synthetic_timing(args.scale, args.seed, verify_seconds)
    print("command: python " + " ".join(sys.argv))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
