"""Are the ImageNet namer's names right, specific when sure, steady over seeds and never two alike?

Sets built here (cached under --data-dir), each clustered with imgcluster's defaults on
efficientnet-lite0 (seeds 0..--seeds-1), then every cluster named four ways:
- flat: the most probable class of 8 representatives, kept distinct by taking one of the five best
  (the namer before issue 26);
- main: the hedged namer before its confidence was calibrated per kind of node (main at 55e7df2,
  kept below as it was): 16 members chosen by content hash, their mean class probabilities summed
  up ImageNet's is-a tree, the most specific node scoring >= 0.5, narrowed to where 3 in 4 members'
  best classes agree, else mixed or unrecognised; likely from a score of 0.65;
- now: the namer as shipped (imgcluster.label.ImageNetNamer): as main, then hedged up the tree to
  the most specific node whose score reaches the bar measured for its kind (a class, a narrow node,
  a broad one), its confidence word from that kind's measured accuracy; clusters no class tells
  apart are told apart by how their pictures look (darker, greyer, reddish …), an unsure name ends in "?";
- before: now, but with every member's class probabilities counted, pictures in two tones too (the
  namer before session 15; now a silhouette or an ink drawing says nothing, see
  ``ImageNetNamer.read_members``).
Sets, the first two tuned on, the others not:
- photos: 30 crops of each of 21 sample photographs; 8 of them show something ImageNet has a class for
  (cat, clock, coffee cup, horse drawing, rocket, temple, flower, cameraman's tripod), 13 do not
  (textures, the moon, text, microscopy, a logo ...);
- digits: 600 of scikit-learn's digit scans (no ImageNet class fits);
- photos-new: 60 other crops of each photo (another crop seed), not looked at while tuning;
- digits-all: all 1,797 digit scans;
- crop groups: 3 disjoint groups of 16 of the photos-new crops of each photo, named as true groups
  without clustering (held out: more draws of members than the clusters give);
- two-tone copies (black and white at Otsu's threshold) of the views and of the crop groups of
  ImageNet-like photos, held out and kept out of the totals;
- views: 8 views of each whole ImageNet-like photo (80-100% of it, every other one mirrored), plus
  scikit-image's motorcycle, named as true groups without clustering: one photo per group (a class
  at the leaves), then two (cat+horse: "placental"; clock+camera: "device"; rocket+motorcycle:
  "vehicle"; coffee+temple: nothing shared, a mixed name), to see the name climb the tree.
How a name is scored: a name *claims* when it reads likely or sure and names a node;
a claim is right when its node is one of the label's classes or above one. A name that claims
nothing (unsure: mixed, unrecognised, a lone guess below the bar) is neither right nor wrong, and is
counted apart: it costs coverage (right claims / clusters), not accuracy (right claims / claims).
For a label with no ImageNet class every claim is wrong; what counts there is that names are unsure.
Specificity: classes under the named node (1 = a class). Steady: labels whose clusters get exactly
the same names (text included) on every seed. Counted out: names ending "· k of n"; told apart by
looks: names ending in a word of ``label.appearance``.

    python bench/names.py [--data-dir /tmp/imgcluster-names] [--seeds 4]
"""

from __future__ import annotations

import argparse
import csv
import re
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
from imgcluster.label.appearance import HUES, SCALES
from imgcluster.label.base import (
    TOP,
    distinct_choice,
    merge_by_name,
    names_from_scores,
    sample_by_hash,
)
from imgcluster.label.hierarchy import (
    MIXED,
    UNRECOGNISED,
    HedgedName,
    agreement,
    hedge,
    imagenet_hierarchy,
    kind_of,
    mixed_parts,
    narrow,
)
from imgcluster.store import ClusterName, Workspace

# The ImageNet classes (indices) a crop of each sample photo may rightly be called; absent: none fits.
TRUTH = {"chelsea": [281, 282, 285], "clock": [409, 892], "coffee": [967, 968, 504], "horse": [339],
         "rocket": [657, 744, 812], "china": [698, 663, 832], "flower": [985], "camera": [872, 759, 732],
         "motorcycle": [665, 670, 671]}
GROUPS = {"cat+horse": ["chelsea", "horse"], "clock+camera": ["clock", "camera"],
          "rocket+motorcycle": ["rocket", "motorcycle"], "coffee+china": ["coffee", "china"]}
HIERARCHY = imagenet_hierarchy()
NAMERS = ("flat", "main", "before", "now")
HELD_OUT = {"photos-new": "held out", "digits-all": "held out"}  # not looked at while choosing the rules


def labelled(root: Path) -> list[tuple[str, str]]:
    with open(root / "labels.csv") as handle:
        return [(str(root / "images" / row["path"]), row["label"]) for row in csv.DictReader(handle)]


def truth_nodes(label: str) -> set[int]:
    """The nodes a name of ``label`` may be: its classes and everything above them."""
    return {a for c in TRUTH.get(label, []) for a in HIERARCHY.ancestors(c)}


def node_of(text: str) -> int | None:
    try:
        return HIERARCHY.find(text.rstrip("?"))  # an unsure name ends in "?"
    except KeyError:
        return None


# From which confidence each namer's names claimed something: the flat namer showed no confidence
# word (each name claimed), main read likely from a score of 0.65; the namer now: its own word.
CLAIMS_FROM = {"flat": 0.0, "main": 0.65}


def judge(name: ClusterName, allowed: set[int], hedges: bool = True, claims_from: float | None = None
          ) -> tuple[str, int | None]:
    """(verdict, classes under the named node): verdict right or wrong for a claim, else unsure.
    ``hedges``: False to judge the node whatever the name's level; ``claims_from``: the confidence
    from which a name claims (default: where it reads likely)."""
    unsure = name.level == "unsure" if claims_from is None else (name.confidence or 0.0) < claims_from
    if hedges and unsure:
        return "unsure", None
    node = node_of(name.name.split(" · ")[0])
    if node is None:  # a claim that is not a node of the tree (none is, today): wrong
        return "wrong", None
    return ("right" if node in allowed else "wrong"), int(HIERARCHY.class_counts[node])


def classes_if_right(name: ClusterName, allowed: set[int]) -> int | None:
    """Classes under the named node when it is right, whatever the name's level; else None."""
    verdict, classes = judge(name, allowed, hedges=False)
    return classes if verdict == "right" else None


class FlatNamer(ImageNetNamer):
    """The namer before issue 26: most probable class of 8 representatives, distinct among each
    cluster's five best. Its confidence is the class's mean probability."""

    def name(self, clusters, progress=None):
        means = [self.representatives(view).mean(axis=0) for view in clusters]
        terms, scores = merge_by_name(self.hierarchy.names[:1000], np.stack(means))
        return sorted(names_from_scores([v.cluster for v in clusters], scores, terms, self.source),
                      key=lambda n: n.cluster)

    def representatives(self, view: ClusterView) -> np.ndarray:
        return self.class_probabilities(ClusterView(view.cluster, view.size, view.paths, view.content_hashes))


class MainNamer(ImageNetNamer):
    """The hedged namer before this change (main at 55e7df2), kept here as it was to measure against:
    16 members by content hash, the sure node (>= 0.5) narrowed where 3 in 4 members' best classes
    agree, else mixed or unrecognised; confidence the node's score, read likely from 0.65."""

    def name(self, clusters, progress=None):
        hedged, scores = [], []
        for view in clusters:
            probabilities = self.class_probabilities(view)
            hedged.append(main_name_cluster(probabilities))
            scores.append(HIERARCHY.scores(probabilities.mean(axis=0, keepdims=True))[0])
        texts = main_distinct_names(hedged, scores)
        return [ClusterName(view.cluster, text, self.source, round(name.confidence, 4),
                            [(text, round(name.confidence, 4))][:TOP])
                for view, text, name in zip(clusters, texts, hedged)]


class BeforeNamer(ImageNetNamer):
    """The namer now as it was before pictures in two tones (silhouettes, ink drawings) counted as
    no evidence (session 15): every member's class probabilities count."""

    def read_members(self, view):
        members = super().read_members(view)
        return None if members is None else (members[0], np.ones(len(members[0]), dtype=bool))


COUNTED = re.compile(r" · \d+ of \d+$")
LOOKS = {word for _, _, pair, ends in SCALES for word in pair + ends} | {word for _, word in HUES} | {
    "smaller", "larger", "smallest", "largest"}


def main_name_cluster(probabilities: np.ndarray) -> HedgedName:
    """name_cluster as it was on main (55e7df2)."""
    per_image = HIERARCHY.scores(probabilities)
    scores = HIERARCHY.scores(np.asarray(probabilities).mean(axis=0, keepdims=True))[0]
    node = hedge(scores, HIERARCHY)
    if node is not None:
        support = agreement(per_image, HIERARCHY)
        named = narrow(node, support, HIERARCHY)
        confidence = float(scores[node]) if named == node else min(float(scores[node]), float(support[named]))
        return HedgedName(HIERARCHY.names[named], named, confidence)
    best = float(np.where(HIERARCHY.general, -1.0, scores).max())
    said = [hedge(row, HIERARCHY) for row in per_image]
    sure = [n for n in said if n is not None]
    if len(sure) < 0.5 * len(said):
        return HedgedName(UNRECOGNISED, None, best)
    parts = mixed_parts(sure, scores, HIERARCHY)
    text = MIXED + ", ".join(HIERARCHY.names[p] for p in parts) if len(parts) > 1 else HIERARCHY.names[parts[0]]
    return HedgedName(text, None, best, tuple(parts))


def main_distinct_names(names: list[HedgedName], scores: list[np.ndarray], rounds: int = 3) -> list[str]:
    """distinct_names as it was on main (55e7df2): a guess for unrecognised clusters, then the node
    whose score differs most (any node, however broad: "unrecognised (stopwatch?) · covering")."""
    texts = [n.text for n in names]
    used = [{a for node in ((n.node,) if n.node is not None else n.parts) for a in HIERARCHY.ancestors(node)}
            for n in names]
    unknown = [i for i, n in enumerate(names) if n.text == UNRECOGNISED]
    if unknown:
        guesses = distinct_choice(np.stack([scores[i][:1000] for i in unknown]), min_ratio=0.0)
        for i, guess in zip(unknown, guesses.tolist()):
            texts[i] = f"{UNRECOGNISED} ({HIERARCHY.names[guess]}?)"
            used[i].update(HIERARCHY.ancestors(guess))
    for _ in range(rounds):
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(text, []).append(i)
        clashes = [group for group in groups.values() if len(group) > 1]
        if not clashes:
            break
        for group in clashes:
            stacked = np.stack([scores[i] for i in group])
            pairs = []
            for row, i in enumerate(group):
                difference = np.where(HIERARCHY.general, -np.inf, stacked[row] - np.delete(stacked, row, axis=0).max(axis=0))
                difference[list(used[i])] = -np.inf
                best = float(difference.max())
                ranked = sorted(np.argsort(-difference, kind="stable")[:len(group) + 64],
                                key=lambda n: (difference[n] < best - 0.1 * abs(best), int(HIERARCHY.class_counts[n]),
                                               -float(difference[n]), int(n)))
                pairs += [(rank, -float(difference[node]), row, int(node)) for rank, node in enumerate(ranked[:len(group) + 8])]
            chosen: dict[int, int] = {}
            taken: set[str] = set()
            for _, _, row, node in sorted(pairs):
                if group[row] not in chosen and HIERARCHY.names[node] not in taken:
                    chosen[group[row]] = node
                    taken.add(HIERARCHY.names[node])
            for i, node in chosen.items():
                texts[i] += " · " + HIERARCHY.names[node]
                used[i].add(node)
    return texts


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


def write_two_tone(dest: Path, sources: list[str]) -> list[str]:
    """Two-tone copies (black and white at Otsu's threshold, PNG) of ``sources``: silhouettes of
    the photos, as a line drawing or a silhouette gives an ImageNet classifier."""
    from skimage.filters import threshold_otsu

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for source in sources:
        path = dest / (Path(source).parent.name + "-" + Path(source).stem + ".png")
        if not path.exists():
            luma = np.asarray(Image.open(source).convert("L"))
            Image.fromarray(np.where(luma > threshold_otsu(luma), 255, 0).astype(np.uint8)).save(path)
        out.append(str(path))
    return out


def views_of(run: imgcluster.Run, images: int = 16) -> list[ClusterView]:
    """What the pipeline shows a namer (api/naming.py): representatives first, and a sample by hash."""
    by_id = {r.id: r for r in run.images}
    chosen = run.representatives()
    members: dict[int, list] = defaultdict(list)
    for record, cluster in zip(run.images, np.asarray(run.assignments.clusters).tolist()):
        members[cluster].append(record)
    views = []
    for summary in run.clusters():
        if summary.cluster < 0:
            continue
        ids = [i for i, _ in chosen[summary.cluster].ordered()] if summary.cluster in chosen else []
        shown = [by_id[i] for i in dict.fromkeys(ids + list(summary.representatives)) if i in by_id][:images]
        pool = members[summary.cluster]
        sampled = [pool[i] for i in sample_by_hash([r.content_hash for r in pool])]
        sample = ClusterView(summary.cluster, summary.size, [r.path for r in sampled],
                             [r.content_hash or "" for r in sampled])
        views.append(ClusterView(summary.cluster, summary.size, [r.path for r in shown],
                                 [r.content_hash or "" for r in shown], sample=sample))
    return views


def majority(run: imgcluster.Run, labels: dict[str, str]) -> dict[int, str]:
    votes: dict[int, Counter] = defaultdict(Counter)
    for record, cluster in zip(run.images, np.asarray(run.assignments.clusters).tolist()):
        if cluster >= 0:
            votes[cluster][labels[record.path]] += 1
    return {c: v.most_common(1)[0][0] for c, v in votes.items()}


class Tally:
    """One namer's figures on one set, over seeds."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.names_by_seed: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.rows: list[tuple[str, ClusterName, str, int | None]] = []

    def add(self, seed: int, label: str, name: ClusterName, inside: bool, verdict: str, classes: int | None) -> None:
        self.rows.append((label, name, verdict, classes))
        self.names_by_seed[label][seed].append(name.name)
        key = "in" if inside else "out"
        self.counts[key] += 1
        self.counts[f"{key} {verdict}"] += 1
        self.counts[f"{key} mixed"] += verdict == "unsure" and name.name.startswith(MIXED)
        self.counts[f"{key} unrecognised"] += verdict == "unsure" and name.name.startswith(UNRECOGNISED)
        self.counts[f"{key} class"] += verdict == "right" and classes == 1
        self.counts["counted"] += bool(COUNTED.search(name.name))
        self.counts["looks"] += name.name.split(" · ")[-1] in LOOKS

    def steady(self, seeds: int) -> tuple[int, int]:
        kept = [label for label, by_seed in self.names_by_seed.items()
                if len(by_seed) == seeds and len({tuple(sorted(v)) for v in by_seed.values()}) == 1]
        return len(kept), len(self.names_by_seed)

    def line(self, seeds: int | None) -> str:
        c = self.counts
        parts = []
        if c["in"]:
            claims = c["in right"] + c["in wrong"]
            parts.append(f"ImageNet-like {c['in']}: right {c['in right']}/{claims} claims"
                         f" ({c['in right'] / max(claims, 1):.0%}), coverage {c['in right'] / c['in']:.0%},"
                         f" {c['in class']} right at a class, {c['in unsure']} unsure"
                         f" ({c['in mixed']} mixed, {c['in unrecognised']} unrecognised,"
                         f" {c['in unsure'] - c['in mixed'] - c['in unrecognised']} a node below its bar)")
        if c["out"]:
            parts.append(f"no ImageNet class {c['out']}: {c['out wrong']} claims (all wrong),"
                         f" {c['out unsure']} unsure ({c['out mixed']} mixed, {c['out unrecognised']} unrecognised)")
        parts.append(f"alike {c['alike']}, counted out {c['counted']}, told apart by looks {c['looks']}")
        if seeds:
            kept, labels = self.steady(seeds)
            parts.append(f"steady {kept}/{labels} labels")
        return "; ".join(parts)


def name_all(namers: dict[str, ImageNetNamer], views: list[ClusterView], truth: dict[int, str],
             allowed: dict[int, set[int]], tallies: dict[str, Tally], seed: int, inside: set[str],
             show: bool) -> dict[str, list]:
    named = {}
    for label, namer in namers.items():
        names = sorted(namer.name(views), key=lambda n: n.cluster)
        tallies[label].counts["alike"] += len(names) - len({n.name for n in names})
        rows = []
        for name in names:
            verdict, classes = judge(name, allowed[name.cluster], claims_from=CLAIMS_FROM.get(label))
            tallies[label].add(seed, truth[name.cluster], name, truth[name.cluster] in inside, verdict, classes)
            rows.append((truth[name.cluster], name, verdict, classes))
        named[label] = rows
    if show:
        for i, (truth_label, flat, _, _) in enumerate(named["flat"]):
            first, now = named["main"][i][1], named["now"][i]
            print(f"  {truth_label:20s} {flat.name[:22]:22s} | {first.name[:34]:34s} | {now[1].name[:44]:44s}"
                  f" {now[1].level or '':6s} {now[2]:6s} classes {now[3] if now[3] is not None else '-'}")
    return named


def crop_groups(labels: dict[str, str], hashes: dict[str, str], groups: int = 3, size: int = 16
                ) -> tuple[list[ClusterView], dict[int, str]]:
    """Disjoint groups of ``size`` crops of each photo (first by path), as clusters a namer sees."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for path, label in sorted(labels.items()):
        by_label[label].append(path)
    views, truth = [], {}
    for label, paths in sorted(by_label.items()):
        for g in range(groups):
            chunk = paths[g * size:(g + 1) * size]
            cluster = len(views)
            views.append(ClusterView(cluster, len(chunk), chunk, [hashes.get(p, "") for p in chunk]))
            truth[cluster] = label
    return views, truth


def count(named: dict[str, list], judged: list[tuple[str, str, bool]], overall: dict[str, Counter],
          inside: set[str]) -> None:
    """Add one naming's verdicts to the totals over every set, and the namer now's names of a node
    (their kind, word, and whether the node is right whatever the word) to ``judged``."""
    for label, rows in named.items():
        for truth_label, _, verdict, _ in rows:
            overall[label]["claims"] += verdict != "unsure"
            overall[label][verdict] += 1
            overall[label]["inside"] += truth_label in inside
    for truth_label, name, _, _ in named["now"]:
        node = node_of(name.name.split(" · ")[0])
        if node is not None:
            right = node in (truth_nodes(truth_label) if truth_label in TRUTH else set.intersection(
                *(truth_nodes(m) for m in GROUPS[truth_label])) if truth_label in GROUPS else set())
            judged.append((kind_of(node, HIERARCHY), name.level or "", right))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/imgcluster-names")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--show", action="store_true", help="print every cluster's three names")
    args = parser.parse_args()
    print("command: python bench/names.py " + " ".join(sys.argv[1:]))
    base = Path(args.data_dir)
    started = time.perf_counter()
    sets = {"photos": write_photo_crops(base / "photos"), "digits": write_digits(base / "digits", limit=600),
            "photos-new": write_photo_crops(base / "photos-new", per_photo=60, seed=1),
            "digits-all": write_digits(base / "digits-all")}
    classifier = load_model("efficientnet-lite0")
    workspace = base / "ws"
    inside = set(TRUTH) | set(GROUPS)
    # (verdict now, classes under the node now when it is right whatever its level, else None)
    specific: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    calibration: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)  # tuned on / held out
    overall: dict[str, Counter] = defaultdict(Counter)
    hashes: dict[str, str] = {}  # path → content hash, for the class probabilities' cache
    for set_name, folder in sets.items():
        labels = dict(labelled(folder.parent))
        tallies = {label: Tally() for label in NAMERS}
        for seed in range(args.seeds):
            config = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(seed=seed),
                                          cluster=imgcluster.ClusterConfig(seed=seed),
                                          name=imgcluster.NameConfig(namer="none"))
            run = imgcluster.cluster(folder, model="efficientnet-lite0", workspace=workspace, config=config)
            ws = Workspace.open(workspace)  # the class probabilities' cache: naming again is cheap
            namers = {"flat": FlatNamer(classifier, HIERARCHY, 8, ws),
                      "main": MainNamer(classifier, HIERARCHY, 16, ws),
                      "before": BeforeNamer(classifier, HIERARCHY, 16, ws),
                      "now": ImageNetNamer(classifier, HIERARCHY, 16, ws)}
            truth = majority(run, labels)
            views = views_of(run)
            if args.show:
                print(f"\n{set_name}, seed {seed}: flat | main | now")
            named = name_all(namers, views, truth, {c: truth_nodes(t) for c, t in truth.items()}, tallies, seed,
                             inside, args.show)
            ws.close()
            for (label, _, flat_verdict, _), before, now in zip(named["flat"], named["main"], named["now"]):
                if label in TRUTH and flat_verdict == "right":
                    specific[set_name].append(tuple((row[2], classes_if_right(row[1], truth_nodes(label)))
                                                    for row in (before, now)))
            count(named, calibration[HELD_OUT.get(set_name, "tuned on")], overall, inside)
        print(f"\n## {set_name}, seeds 0-{args.seeds - 1}")
        for label in NAMERS:
            print(f"{label:8s} {tallies[label].line(args.seeds)}")
        hashes.update({r.path: r.content_hash or "" for r in run.images})
    ws = Workspace.open(workspace)
    views, truth = crop_groups(dict(labelled(sets["photos-new"].parent)), hashes)
    namers = {"flat": FlatNamer(classifier, HIERARCHY, 8, ws), "main": MainNamer(classifier, HIERARCHY, 16, ws),
              "before": BeforeNamer(classifier, HIERARCHY, 16, ws), "now": ImageNetNamer(classifier, HIERARCHY, 16, ws)}
    tallies = {label: Tally() for label in NAMERS}
    print("\n## crop groups: 3 groups of 16 of the other crops of each photo, as true groups (held out)")
    named = name_all(namers, views, truth, {c: truth_nodes(t) for c, t in truth.items()}, tallies, 0, inside, args.show)
    ws.close()
    for label in NAMERS:
        print(f"{label:8s} {tallies[label].line(None)}")
    count(named, calibration["held out"], overall, inside)
    whole = write_whole_views(base / "views")
    groups = {label: [label] for label in TRUTH} | GROUPS
    views, truth, allowed = [], {}, {}
    for cluster, (group, members) in enumerate(groups.items()):
        paths = [p for m in members for p in whole[m][:8 // len(members)]]
        views.append(ClusterView(cluster, len(paths), paths, [""] * len(paths)))
        truth[cluster] = group
        allowed[cluster] = set.intersection(*(truth_nodes(m) for m in members))
    namers = {"flat": FlatNamer(classifier, HIERARCHY, 8), "main": MainNamer(classifier, HIERARCHY, 16),
              "before": BeforeNamer(classifier, HIERARCHY, 16), "now": ImageNetNamer(classifier, HIERARCHY, 16)}
    tallies = {label: Tally() for label in NAMERS}
    print("\n## views of whole photos: true groups of one photo (a class) or two (a broader node)")
    named = name_all(namers, views, truth, allowed, tallies, 0, inside, True)
    for label in NAMERS:
        print(f"{label:8s} {tallies[label].line(None)}")
    for (label, _, flat_verdict, _), before, now in zip(named["flat"], named["main"], named["now"]):
        if label in TRUTH and flat_verdict == "right":
            specific["views"].append(tuple((row[2], classes_if_right(row[1], allowed[row[1].cluster]))
                                           for row in (before, now)))
    count(named, calibration["tuned on"], overall, inside)
    # Held out, and kept out of the totals above (comparable with earlier runs): the same photos
    # and pairs, and the crop groups, as two-tone copies.
    two_views = [ClusterView(v.cluster, v.size, write_two_tone(base / "two-tone", v.paths), [""] * len(v.paths))
                 for v in views]
    group_views, group_truth = crop_groups(dict(labelled(sets["photos-new"].parent)), hashes)
    group_views = [v for v in group_views if group_truth[v.cluster] in TRUTH]
    offset = len(two_views)
    two_views += [ClusterView(offset + i, v.size, write_two_tone(base / "two-tone", v.paths), [""] * len(v.paths))
                  for i, v in enumerate(group_views)]
    two_truth = truth | {offset + i: group_truth[v.cluster] for i, v in enumerate(group_views)}
    two_allowed = allowed | {offset + i: truth_nodes(group_truth[v.cluster]) for i, v in enumerate(group_views)}
    tallies = {label: Tally() for label in NAMERS}
    print("\n## two-tone copies of the views and of the crop groups (held out, not in the totals)")
    name_all(namers, two_views, two_truth, two_allowed, tallies, 0, inside, args.show)
    for label in NAMERS:
        print(f"{label:8s} {tallies[label].line(None)}")
    print()
    for label in NAMERS:
        c = overall[label]
        print(f"{label:8s} over every set: {c['right']}/{c['claims']} claims right ({c['right'] / max(c['claims'], 1):.0%}),"
              f" {c['wrong']} wrong; ImageNet-like clusters named right: {c['right']}/{c['inside']}"
              f" ({c['right'] / max(c['inside'], 1):.0%})")
    for set_name, rows in specific.items():
        print(f"{set_name}: of the {len(rows)} ImageNet-like clusters flat named right, named right by a class "
              "(of them likely or sure): " + ", ".join(
                  f"{label} {sum(1 for row in rows if row[i][1] == 1)}"
                  f" ({sum(1 for row in rows if row[i] == ('right', 1))})" for i, label in enumerate(("main", "now"))))
    for group, judged in calibration.items():
        print(f"names of a node right per kind and word (now, sets {group}): " + "; ".join(
            f"{kind} {word} {sum(r for k, w, r in judged if (k, w) == (kind, word))}/"
            f"{sum(1 for k, w, _ in judged if (k, w) == (kind, word))}"
            for kind in ("class", "narrow", "broad") for word in ("sure", "likely", "unsure")
            if any((k, w) == (kind, word) for k, w, _ in judged)))
    print(f"time: {time.perf_counter() - started:.0f} s (2 shared cores, under load)")


if __name__ == "__main__":
    main()
