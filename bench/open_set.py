"""Does filing hold images that belong nowhere, file those that belong, and mean its probabilities?

Two collections built here, embedded once with efficientnet-lite0 (cached by content in one
workspace under --data-dir), each fitted with imgcluster's default and then filed into:
- photos: 60 random crops of each of 21 sample photographs; the run is fitted on crops 0-29 of 15
  photos. Filed: (a) crops 30-59 of the same 15 photos (in distribution), (b) scikit-learn's 1,797
  digits (far out of distribution), (c) all crops of the 6 photos left out of the fit (near);
- digits: fitted on the even-numbered scans of 0-7. Filed: the odd-numbered scans of 0-7 (in
  distribution), the photo crops (far), and the 8s and 9s (near);
- checks for rules chosen on the two above (``--collections``): photos-b and photos-c (5 other
  photos left out of the fit), digits-0-4 and digits-5-9 (fitted on the even-numbered scans of
  those; the other five digits near).
Each rule files the same vectors through the run's persisted predictor: held quantile 0 is the
filing before issue 24 (nearest-image vote, one global similarity bar), the others the per-cluster
open-set tests, each set filed one image at a time ("alone": as the web app's upload files) and as
one batch (as `predict` on a folder and `update` file; an image among held images of its batch is
held with them). An image is filed correctly when it joins the cluster that holds most of the fit's
images of its class. ECE: expected calibration error of the membership probability over filed
images (10 equal-width bins), in distribution and over all three sets together. "… of clustered":
the share filed of the in-distribution images the clusterer itself put in a cluster (one it left
unclustered is held by a filing that reproduces the fit).
Then `update` on the digits 0-7 run with the 8s and 9s added: how many 8/9s each rule files into
the old clusters, holds, and proposes as new clusters.

    python bench/open_set.py [--data-dir /tmp/imgcluster-open-set] [--quantiles 0,0.01,0.03]
                             [--collections photos,digits,photos-b,digits-0-4,photos-c,digits-5-9]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.cluster.openset import DEFAULT_HELD_QUANTILE
from imgcluster.demo import write_digits, write_photo_crops


def labelled(root: Path) -> list[tuple[str, str]]:
    with open(root / "labels.csv") as handle:
        return [(str(root / "images" / row["path"]), row["label"]) for row in csv.DictReader(handle)]


def number(path: str) -> int:
    return int(Path(path).stem.split("-")[-1])


def collections(base: Path) -> dict[str, dict[str, list[tuple[str, str]]]]:
    photos = labelled(write_photo_crops(base / "photos", per_photo=60).parent)
    digits = labelled(write_digits(base / "digits").parent)
    subjects = sorted({label for _, label in photos})

    def photo_sets(left_out: list[str]) -> dict[str, list[tuple[str, str]]]:
        return {"fit": [(p, lab) for p, lab in photos if lab not in left_out and number(p) < 30],
                "in-distribution": [(p, lab) for p, lab in photos if lab not in left_out and number(p) >= 30],
                "far OOD": digits,
                "near OOD": [(p, lab) for p, lab in photos if lab in left_out]}

    def digit_sets(seen: range) -> dict[str, list[tuple[str, str]]]:
        return {"fit": [(p, lab) for p, lab in digits if int(lab) in seen and number(p) % 2 == 0],
                "in-distribution": [(p, lab) for p, lab in digits if int(lab) in seen and number(p) % 2 == 1],
                "far OOD": photos,
                "near OOD": [(p, lab) for p, lab in digits if int(lab) not in seen]}

    # The others are checks for rules chosen on the first two.
    return {"photos": photo_sets(subjects[::4]),  # 6 of 21 photos left out
            "digits": digit_sets(range(8)),
            "photos-b": photo_sets(subjects[2::4]),  # 5 others left out
            "digits-0-4": digit_sets(range(5)),
            "photos-c": photo_sets(subjects[1::4]),
            "digits-5-9": digit_sets(range(5, 10))}


def link(folder: Path, items: list[tuple[str, str]]) -> Path:
    for path, label in items:
        target = folder / label / Path(path).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    return folder


def vectors_of(workspace: Path, model_id: str, folder: Path, items: list[tuple[str, str]]) -> np.ndarray:
    """The embeddings of ``items`` as linked under ``folder`` (the paths the workspace catalogued)."""
    paths = [str(folder / label / Path(path).name) for path, label in items]
    ws = imgcluster.open_workspace(workspace=workspace)
    try:
        records = {r.path: r for r in ws.images(paths)}
        flat = ws.load_embeddings(model_id, [records[p].content_hash for p in paths])
    finally:
        ws.close()
    vectors = flat.reshape(len(items), -1).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ece(probability: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    if not len(probability):
        return float("nan")
    which = np.minimum((probability * bins).astype(int), bins - 1)
    return float(sum(abs(probability[which == b].mean() - correct[which == b].mean()) * np.mean(which == b)
                     for b in range(bins) if np.any(which == b)))


def reliability(probability: np.ndarray, correct: np.ndarray, bins: int = 5) -> str:
    which = np.minimum((probability * bins).astype(int), bins - 1)
    cells = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            cells.append(f"{b / bins:.1f}-{(b + 1) / bins:.1f}: {correct[inside].mean():.2f} (n={inside.sum()})")
    return "; ".join(cells)


def bins_of(probability: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean stated probability, share correct, count) per non-empty equal-width bin."""
    which = np.minimum((probability * bins).astype(int), bins - 1)
    return [(float(probability[which == b].mean()), float(correct[which == b].mean()), int(np.sum(which == b)))
            for b in range(bins) if np.any(which == b)]


def draw_reliability(path: Path, curves: dict[str, list[tuple[float, float, int]]]) -> None:
    """A reliability plot with Pillow (matplotlib is not a dependency): stated probability across,
    share filed as the fit up, one line per curve, dot area by count."""
    from PIL import Image, ImageDraw

    size, pad = 520, 60
    image = Image.new("RGB", (size + 2 * pad + 320, size + 2 * pad), "white")
    draw = ImageDraw.Draw(image)

    def at(x: float, y: float) -> tuple[float, float]:
        return pad + x * size, pad + (1 - y) * size

    for tick in np.linspace(0, 1, 6):
        draw.line([at(tick, 0), at(tick, 1)], fill=(232, 232, 232))
        draw.line([at(0, tick), at(1, tick)], fill=(232, 232, 232))
        draw.text((at(tick, 0)[0] - 8, at(tick, 0)[1] + 6), f"{tick:.1f}", fill="black")
        draw.text((pad - 30, at(0, tick)[1] - 6), f"{tick:.1f}", fill="black")
    draw.rectangle([at(0, 1), at(1, 0)], outline="black")
    draw.line([at(0, 0), at(1, 1)], fill=(150, 150, 150), width=1)
    draw.text((pad + size / 2 - 80, pad + size + 28), "stated membership probability", fill="black")
    draw.text((10, 20), "share filed where the clusterer puts them (filed images: in-distribution + near + far)",
              fill="black")
    colours = [(31, 119, 180), (120, 160, 220), (174, 199, 232), (214, 39, 40), (235, 110, 100), (255, 180, 170)]
    for (label, points), colour in zip(curves.items(), colours):
        xy = [at(x, y) for x, y, _ in points]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=3)
        for (x, y), (_, _, n) in zip(xy, points):
            r = 3 + 2 * np.log1p(n)
            draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
        index = list(curves).index(label)
        draw.line([(pad + size + 20, pad + 20 + 24 * index), (pad + size + 44, pad + 20 + 24 * index)], fill=colour,
                  width=4)
        draw.text((pad + size + 50, pad + 14 + 24 * index), label, fill="black")
    image.save(path)


def score(name: str, sets: dict, run: imgcluster.Run, workspace: Path, quantiles: list[float]) -> dict:
    """File the test sets with a predictor fitted on the run's fit images only. The run itself was
    fitted on the fit and in-distribution images together, so each in-distribution image has the
    cluster the clusterer gives it when it is part of the collection: the answer filing should
    reproduce (as tests/cluster/test_predictor.py checks)."""
    from imgcluster.cluster.predictor import Predictor

    fit_paths = {p for p, _ in sets["fit"]}
    images = run.images
    is_fit = np.array([Path(r.path).name in {Path(p).name for p in fit_paths} and
                       Path(r.path).parent.parent.name.endswith("fit") for r in images])
    assigned = run.assignments
    clusters = assigned.clusters
    label_of = np.array([Path(r.path).parent.name for r in images])
    home = {label: Counter(clusters[is_fit & (label_of == label) & (clusters >= 0)].tolist()).most_common(1)
            for label in set(label_of.tolist())}
    home = {label: found[0][0] for label, found in home.items() if found}
    ws = imgcluster.open_workspace(workspace=workspace)
    vectors = ws.load_embeddings(run.record.model_id, [r.content_hash for r in images]).reshape(len(images), -1)
    ws.close()
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    tested = {"in-distribution": (vectors[~is_fit], list(label_of[~is_fit]), clusters[~is_fit])}
    for part in ("far OOD", "near OOD"):
        linked = workspace.parent / "sets" / f"{name}-{part.replace(' ', '-')}"
        tested[part] = (vectors_of(workspace, run.record.model_id, linked, sets[part]),
                        [lab for _, lab in sets[part]], None)
    results = {}
    for quantile, together in [(q, t) for q in quantiles for t in ((False, True) if q else (False,))]:
        predictor = Predictor(seed=0, held_quantile=quantile).fit(
            vectors[is_fit], clusters[is_fit], assigned.membership_probability[is_fit],
            np.c_[assigned.x, assigned.y][is_fit], assigned.image_ids[is_fit])
        rows, probabilities, corrects = {}, [], []
        for part, (queries, labels, reference) in tested.items():
            if together:
                prediction = predictor.predict(queries)
            else:  # one image at a time; the same answers as a batch filed with together=False
                prediction = predictor.predict(queries, together=False)
            filed = prediction.clusters >= 0
            by_class = np.array([home.get(lab, -2) == c for lab, c in zip(labels, prediction.clusters.tolist())])
            as_fitted = prediction.clusters == reference if reference is not None else np.zeros(len(filed), bool)
            # In distribution, also the share filed of the images the clusterer put in a cluster: one it
            # left unclustered is held by a filing that reproduces the fit.
            clustered = reference >= 0 if reference is not None else np.ones(len(filed), bool)
            rows[part] = (filed.mean(), filed[clustered].mean() if clustered.any() else float("nan"),
                          as_fitted[filed].mean() if filed.any() else float("nan"),
                          by_class[filed].mean() if filed.any() else float("nan"),
                          ece(prediction.membership_probability[filed], as_fitted[filed]),
                          Counter(h for h in prediction.held_by if h))
            probabilities.append(prediction.membership_probability[filed])
            corrects.append(as_fitted[filed])
        stated, right = np.concatenate(probabilities), np.concatenate(corrects)
        results[(quantile, together)] = {"rows": rows, "ece_all": ece(stated, right), "bins": bins_of(stated, right),
                                         "reliability": reliability(stated, right)}
    print(f"\n{name}: the run fitted on {is_fit.sum()} + {(~is_fit).sum()} in-distribution images, "
          f"{run.record.n_clusters} clusters ({np.mean(clusters < 0):.0%} unclustered); filed by a predictor "
          f"on the {is_fit.sum()} only")
    print(f"  {'held quantile':>13} | {'set':>15} | {'filed':>6} | {'… of clustered':>14} | {'as the fit':>10} | "
          f"{'with class':>10} | {'ECE':>5} | held by")
    for (quantile, together), result in results.items():
        label = f"{quantile:g}" + (" (before)" if quantile == 0 else " batch" if together else " alone")
        for part, (share, of_clustered, fitted, by_class, calibration, held) in result["rows"].items():
            print(f"  {label:>13} | {part:>15} | {share:6.1%} | {of_clustered:14.1%} | {fitted:10.1%} | "
                  f"{by_class:10.1%} | {calibration:5.3f} | " + ", ".join(f"{k} {v}" for k, v in sorted(held.items())))
        print(f"  {'':>13} | {'all filed':>15} | ECE {result['ece_all']:.3f}; share filed as the fit by stated "
              f"probability: {result['reliability']}")
    return results


def update_eights_and_nines(base: Path, sets: dict, workspace: Path, quantiles: list[float]) -> None:
    print("\nupdate: the digits 0-7 run, then the 8s and 9s added to its folder")
    for quantile in quantiles:
        folder = base / "sets" / f"digits-update-{quantile:g}"
        shutil.rmtree(folder, ignore_errors=True)
        link(folder, sets["fit"])
        config = imgcluster.RunConfig(cluster=imgcluster.ClusterConfig(held_quantile=quantile))
        run = imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", namer="none", config=config,
                                 run_key=f"digits-update-fit-{quantile:g}-{int(time.time())}")
        link(folder, sets["near OOD"])
        done = imgcluster.update(folder, workspace=workspace, run_key=f"digits-update-{quantile:g}-{int(time.time())}")
        old = set(run.assignments.clusters.tolist()) - {-1}
        how = Counter()
        for record, cluster, way in zip(done.run.images, done.run.assignments.clusters.tolist(),
                                        done.run.assignments.how_per_image()):
            if Path(record.path).parent.name in ("8", "9"):
                how["into old clusters" if cluster in old else way] += 1
        total = sum(how.values())
        kept_out = how["held"] + how["proposed"]
        print(f"  held quantile {quantile:g}{' (before)' if quantile == 0 else ''}: of {total} 8s and 9s, "
              + ", ".join(f"{k} {v} ({v / total:.0%})" for k, v in how.most_common())
              + f"; held or proposed {kept_out} ({kept_out / total:.0%})"
              + f"; {len(done.proposed)} clusters proposed; held by: {done.held_by}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/imgcluster-open-set"))
    parser.add_argument("--quantiles", default="0,0.01,0.03",
                        help="held quantiles to compare; 0 is the filing before issue 24")
    parser.add_argument("--collections", default="photos,digits",
                        help="which of photos, digits, photos-b, photos-c (5 other photos left out), "
                             "digits-0-4, digits-5-9 (the other five digits near)")
    parser.add_argument("--no-update", action="store_true", help="skip the update on the digits")
    parser.add_argument("--plot", type=Path, default=None, help="write a reliability plot (PNG) here")
    args = parser.parse_args()
    quantiles = [float(q) for q in args.quantiles.split(",")]
    base, workspace = args.data_dir, args.data_dir / "workspace"
    started = time.perf_counter()
    curves = {}
    chosen = args.collections.split(",")
    for name, sets in collections(base).items():
        if name not in chosen:
            continue
        folder = base / "sets" / f"{name}-with-in-distribution"
        link(folder / "fit", sets["fit"])
        link(folder / "in-distribution", sets["in-distribution"])
        for part in ("far OOD", "near OOD"):  # embedded once, cached in the workspace by content
            imgcluster.embed_folder(link(base / "sets" / f"{name}-{part.replace(' ', '-')}", sets[part]),
                                    workspace=workspace)
        run = imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", namer="none",
                                 run_key=f"{name}-{int(time.time())}")
        results = score(name, sets, run, workspace, quantiles)
        for key in ((0, False), (DEFAULT_HELD_QUANTILE, False), (DEFAULT_HELD_QUANTILE, True)):
            if key in results and name in ("photos", "digits"):  # the plot's six colours
                label = f"{name}, " + ("before (vote only)" if not key[0] else
                                       f"held quantile {key[0]:g}, {'as a batch' if key[1] else 'one by one'}")
                curves[label] = results[key]["bins"]
        if name == "digits" and not args.no_update:
            update_eights_and_nines(base, sets, workspace,
                                    [q for q in quantiles if q in (0, 0.01, DEFAULT_HELD_QUANTILE)])
    if args.plot:
        draw_reliability(args.plot, curves)
        print(f"\nreliability plot: {args.plot}")
    print(f"\n({time.perf_counter() - started:.0f} s in all)")
    print("command: python bench/open_set.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
