"""Are the ImageNet namer's names right, specific when sure, and never two alike? Before and after hedging.

Sets built here (cached under --data-dir), each clustered with imgcluster's default on efficientnet-lite0
(seeds 0..--seeds-1), then every cluster named twice from the same representative images:
- before: the most probable class, kept distinct by taking one of the five best (the namer before issue 26);
- after: the hedged name up ImageNet's is-a tree (imgcluster.label.hierarchy).
- photos: 30 crops of each of 21 sample photographs; 8 of them show something ImageNet has a class for
  (cat, clock, coffee cup, horse drawing, rocket, temple, flower, cameraman's camera), 13 do not
  (textures, the moon, text, microscopy, a logo …);
- digits: 600 of scikit-learn's digit scans (no ImageNet class fits);
- views: 8 views of each whole ImageNet-like photo (80-100% of it, every other one mirrored; the
  closest these packaged images come to ImageNet photos), plus scikit-image's motorcycle, named as true
  groups without clustering: one photo per group (a class at the leaves), then two (cat+horse:
  "placental"; clock+camera: "device"; rocket+motorcycle: "vehicle"; coffee+temple: nothing shared,
  a mixed name), to see the name climb the tree when the group does.
A name is right when its node is one of the label's classes or above one; a mixed name is counted
apart (with how many list a right part); for a label with no ImageNet class no name is right, and
what counts is that it is shown unsure. Specificity: classes under the named node (1 = a class).
Per level (sure/likely/unsure): how many names and how many of them right; and right per score bin
over every set, to set the level bars. "As specific": of the ImageNet-like clusters the namer
before named right, those named right and by a class now.

    python bench/names.py [--data-dir /tmp/imgcluster-names] [--seeds 2]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

import imgcluster
from imgcluster.demo import write_digits, write_photo_crops
from imgcluster.embed import load_model
from imgcluster.label import ClusterView, ImageNetNamer
from imgcluster.label.base import merge_by_name, names_from_scores
from imgcluster.label.hierarchy import imagenet_hierarchy
from imgcluster.store import ClusterName

# The ImageNet classes (indices) a crop of each sample photo may rightly be called; absent: none fits.
TRUTH = {"chelsea": [281, 282, 285], "clock": [409, 892], "coffee": [967, 968, 504], "horse": [339],
         "rocket": [657, 744, 812], "china": [698, 663, 832], "flower": [985], "camera": [872, 759, 732],
         "motorcycle": [665, 670, 671]}
GROUPS = {"cat+horse": ["chelsea", "horse"], "clock+camera": ["clock", "camera"],
          "rocket+motorcycle": ["rocket", "motorcycle"], "coffee+china": ["coffee", "china"]}
HIERARCHY = imagenet_hierarchy()


def labelled(root: Path) -> list[tuple[str, str]]:
    with open(root / "labels.csv") as handle:
        return [(str(root / "images" / row["path"]), row["label"]) for row in csv.DictReader(handle)]


def truth_nodes(label: str) -> set[int]:
    """The nodes a name of ``label`` may be: its classes and everything above them."""
    return {a for c in TRUTH.get(label, []) for a in HIERARCHY.ancestors(c)}


def node_of(text: str) -> int | None:
    try:
        return HIERARCHY.find(text)
    except KeyError:
        return None


def judge(name: ClusterName, allowed: set[int], parts: set[int] | None = None) -> tuple[bool, int | None]:
    """(right, classes under the named node) for a name, its text stripped of what tells it apart;
    ``parts``: what a mixed name's first part may be (default: ``allowed``)."""
    text = name.name.split(" · ")[0]
    if text.startswith("mixed: "):
        listed = [node_of(part) for part in text[len("mixed: "):].split(", ")]
        return any(n in (allowed if parts is None else parts) for n in listed), None
    node = node_of(text)
    return node is not None and node in allowed, None if node is None else int(HIERARCHY.class_counts[node])


class BeforeNamer(ImageNetNamer):
    """The namer before issue 26: most probable class, distinct among each cluster's five best."""

    def name(self, clusters, progress=None):
        means = [self.class_probabilities(view).mean(axis=0) for view in clusters]
        terms, scores = merge_by_name(self.hierarchy.names[:1000], np.stack(means))
        return sorted(names_from_scores([v.cluster for v in clusters], scores, terms, self.source),
                      key=lambda n: n.cluster)


def write_whole_views(dest: Path, per_photo: int = 8) -> dict[str, list[str]]:
    """JPEG views of each ImageNet-like sample photo (80-100% of it, every other one mirrored)."""
    from PIL import ImageOps
    from skimage.data import stereo_motorcycle

    from imgcluster.demo import sample_photos

    photos = {name: photo for name, photo in sample_photos().items() if name in TRUTH}
    photos["motorcycle"] = Image.fromarray(stereo_motorcycle()[0]).convert("RGB")
    rng = np.random.default_rng(0)
    out: dict[str, list[str]] = {}
    for name, photo in sorted(photos.items()):
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_photo):
            width, height = photo.size
            scale = rng.uniform(0.8, 1.0)
            w, h = int(width * scale), int(height * scale)
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            view = photo.crop((left, top, left + w, top + h))
            path = dest / name / f"{name}-{i}.jpg"
            (ImageOps.mirror(view) if i % 2 else view).save(path, quality=90)
            out.setdefault(name, []).append(str(path))
    return out


def views_of(run: imgcluster.Run, images: int = 8) -> list[ClusterView]:
    by_id = {r.id: r for r in run.images}
    chosen = run.representatives()
    views = []
    for summary in run.clusters():
        if summary.cluster < 0:
            continue
        ids = [i for i, _ in chosen[summary.cluster].ordered()] if summary.cluster in chosen else []
        paths = [by_id[i].path for i in dict.fromkeys(ids + list(summary.representatives)) if i in by_id][:images]
        views.append(ClusterView(summary.cluster, summary.size, paths, [""] * len(paths)))
    return views


def majority(run: imgcluster.Run, labels: dict[str, str]) -> dict[int, str]:
    votes: dict[int, Counter] = defaultdict(Counter)
    for record, cluster in zip(run.images, np.asarray(run.assignments.clusters).tolist()):
        if cluster >= 0:
            votes[cluster][labels[record.path]] += 1
    return {c: v.most_common(1)[0][0] for c, v in votes.items()}


def tally(rows: list[tuple[str, ClusterName, bool, int | None]], imagenet_like: bool) -> str:
    names = [n.name for _, n, _, _ in rows]
    shown_unsure = sum(1 for _, n, _, _ in rows if n.level == "unsure")
    mixed = [r for _, n, r, _ in rows if n.name.startswith("mixed: ")]
    rows = [row for row in rows if not row[1].name.startswith("mixed: ")]
    right = sum(r for _, _, r, _ in rows)
    alike = len(names) - len(set(names))
    levels = Counter(n.level for _, n, _, _ in rows)
    right_by = Counter(n.level for _, n, r, _ in rows if r)
    shown = ", ".join(f"{lv} {right_by[lv]}/{levels[lv]}" for lv in ("sure", "likely", "unsure") if levels[lv])
    text = (f"{right}/{len(rows)} named right, {len(mixed)} mixed ({sum(mixed)} listing a right part), "
            f"{alike} alike; right per level: {shown}")
    if not imagenet_like:
        text += f"; shown unsure (mixed included) {shown_unsure}/{len(names)}"
    return text


def evaluate(views: list[ClusterView], truth: dict[int, str], namers: dict[str, ImageNetNamer],
             allowed: dict[int, set[int]], parts: dict[int, set[int]] | None = None
             ) -> dict[str, list[tuple[str, ClusterName, bool, int | None]]]:
    out = {}
    for label, namer in namers.items():
        rows = []
        for name in namer.name(views):
            right, classes = judge(name, allowed[name.cluster], (parts or {}).get(name.cluster))
            rows.append((truth[name.cluster], name, right, classes))
        out[label] = rows
    return out


CALIBRATION: list[tuple[float, bool]] = []  # (confidence, right) of every name given after, mixed ones aside


def report(title: str, results: dict[str, list], imagenet: set[str]) -> dict[str, list]:
    print(f"\n## {title}")
    CALIBRATION.extend((n.confidence, right) for _, n, right, _ in results.get("after", [])
                       if not n.name.startswith("mixed: "))
    for label, rows in results.items():
        inside = [r for r in rows if r[0] in imagenet]
        outside = [r for r in rows if r[0] not in imagenet]
        print(f"{label:7s} ImageNet-like: {tally(inside, True) if inside else '-'}")
        if outside:
            print(f"{'':7s} outside ImageNet: {tally(outside, False)}")
    before, after = results.get("before"), results.get("after")
    if before and after:
        for (truth, old, _, old_classes), (_, new, right, classes) in zip(before, after):
            print(f"  {truth:22s} {old.name[:28]:28s} -> {new.name[:60]:60s} {new.level or '':6s} "
                  f"{'right' if right else 'WRONG':5s} classes {classes if classes is not None else '-'}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/imgcluster-names")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    print("command: python bench/names.py " + " ".join(sys.argv[1:]))
    base = Path(args.data_dir)
    started = time.perf_counter()
    photos = write_photo_crops(base / "photos")
    digits = write_digits(base / "digits", limit=600)
    classifier = load_model("efficientnet-lite0")
    namers = {"before": BeforeNamer(classifier, HIERARCHY), "after": ImageNetNamer(classifier, HIERARCHY)}
    imagenet = set(TRUTH)
    specific: list[tuple[int, int | None]] = []
    whole_specific: list[tuple[int, int | None]] = []
    names_per_seed: dict[str, list[set[str]]] = defaultdict(list)
    for folder in (photos, digits):
        labels = dict(labelled(folder.parent))
        for seed in range(args.seeds):
            config = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(seed=seed),
                                          cluster=imgcluster.ClusterConfig(seed=seed),
                                          name=imgcluster.NameConfig(namer="none"))
            run = imgcluster.cluster(folder, model="efficientnet-lite0", workspace=base / "ws", config=config)
            truth = majority(run, labels)
            views = views_of(run)
            results = report(f"{folder.parent.name}, seed {seed}: {len(views)} clusters",
                             evaluate(views, truth, namers, {c: truth_nodes(t) for c, t in truth.items()}), imagenet)
            seen: dict[str, set[str]] = defaultdict(set)
            for (label, old, old_right, _), (_, new, right, classes) in zip(results["before"], results["after"]):
                seen[label].add(new.name)
                if label in imagenet and old_right:
                    specific.append((1, classes if right else None))
            for label, names in seen.items():
                names_per_seed[label].append(names)
    whole = write_whole_views(base / "views")
    groups = {label: [label] for label in TRUTH} | GROUPS
    views, truth, allowed, parts = [], {}, {}, {}
    for cluster, (group, members) in enumerate(groups.items()):
        paths = [p for m in members for p in whole[m][:8 // len(members)]]
        views.append(ClusterView(cluster, len(paths), paths, [""] * len(paths)))
        truth[cluster] = group
        allowed[cluster] = set.intersection(*(truth_nodes(m) for m in members))
        parts[cluster] = set.union(*(truth_nodes(m) for m in members))
    results = report("views of whole photos: true groups of one photo (a class) or two (a broader node)",
                     evaluate(views, truth, namers, allowed, parts), set(groups))
    for (label, _, old_right, _), (_, _, right, classes) in zip(results["before"], results["after"]):
        if label in TRUTH and old_right:
            whole_specific.append((1, classes if right else None))
    for title, pairs in (("crop clusters", specific), ("whole photos", whole_specific)):
        kept = sum(1 for old, new in pairs if new is not None and new <= old)
        print(f"\n{title}: of the ImageNet-like ones named right before, named right and as specifically now: "
              f"{kept}/{len(pairs)}")
    bins = ((0.9, 1.01), (0.8, 0.9), (0.65, 0.8), (0.5, 0.65), (0.0, 0.5))
    print("names right per confidence (after, every set, mixed aside): " + ", ".join(
        f"[{lo:.2f}, {min(hi, 1):.2f}) {sum(r for c, r in CALIBRATION if lo <= c < hi)}/"
        f"{sum(1 for c, _ in CALIBRATION if lo <= c < hi)}" for lo, hi in bins))
    stable = [label for label, seen in names_per_seed.items() if len(seen) == args.seeds and all(s == seen[0] for s in seen)]
    print(f"labels whose cluster keeps one name over {args.seeds} seeds: {len(stable)}/{len(names_per_seed)}")
    print(f"time: {time.perf_counter() - started:.0f} s (2 shared cores, under load)")


if __name__ == "__main__":
    main()
