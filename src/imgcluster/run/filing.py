"""Deriving a run from a living collection: file new images into a run's clusters (``file_new``),
propose new clusters from what does not fit (``propose``), decide proposals (``review``), and turn
the result into a draft (``draft``) for the one save recipe. ``imgcluster.update`` and
``imgcluster.review_proposals`` are the verbs that call these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..cluster import NOISE
from ..cluster.cohesive import (TREE_UP_TO, cohesive_groups, mean_pairwise_similarity, member_similarity,
                                neighbour_agreement)
from ..cluster.predictor import Prediction, Predictor
from ..cluster.settings import collection_min_cluster_size
from ..config import ReduceConfig, RunConfig
from ..represent import representatives
from ..store import Assignments, Embedded, ImageRecord, ProposedCluster, Provenance, Representatives, RunRecord, Workspace
from ..store.records import KINDS
from .derive import derived_record
from .save import Draft, NameStep

log = logging.getLogger(__name__)

# The coarse split of many held images before cohesion cuts them: (rows, probabilities) per group.
CoarseSplit = Callable[[np.ndarray, int, ReduceConfig], "list[tuple[np.ndarray, np.ndarray]]"]
# How proposals are grouped: ``dense_groups``' signature.
Grouping = Callable[..., "tuple[np.ndarray, np.ndarray, np.ndarray]"]

# Per-image outcomes an update adds to fit | filed | attached (the ``how`` column).
HELD, FORCED, PROPOSED, ACCEPTED = "held", "forced", "proposed", "accepted"
# Held images above this share of the collection mean the clusters no longer describe it.
DRIFT_SHARE = 0.2
# Unclustered images of the run within this many nearest neighbours of a held image may join it
# in a proposed cluster.
NEAR_UNCLUSTERED = 30
# A proposed cluster is as cohesive as this share of the parent's clusters, each measured on a
# sample of its members: COHESION_ROWS in all, COHESION_MIN_SAMPLE at least per cluster. Measured on
# the digits 0-7 run with the 8s and 9s added, after the open-set filing began holding other images
# than the old global bar: at 0.1 a group of 6 eights and 3 nines passed (67% one digit); at 0.25
# the proposals were 22 and 5 eights and 5 nines, each one digit, holding 32 of the 46 new images
# not filed (0.5: 26 of 46).
COHESION_QUANTILE = 0.25
COHESION_ROWS = 4_000
COHESION_MIN_SAMPLE = 16
# Rebuild the predictor's index once the rows filed since it was built pass this share of it.
REBUILD_SHARE = 0.5


@dataclass
class Filed:
    """The derived run's rows: the parent's kept rows first, then the new images."""

    image_ids: np.ndarray
    clusters: np.ndarray
    probabilities: np.ndarray
    xy: np.ndarray
    how: np.ndarray
    reasons: list[str]
    first_new: int
    new_vectors: np.ndarray
    held_by: dict[str, int] = dataclasses.field(default_factory=dict)  # new images held, by test failed


def file_new(predictor: Predictor, old: Assignments, kept: np.ndarray, vectors: np.ndarray, image_ids: np.ndarray,
             min_probability: float = 0.0, force: bool = False) -> Filed:
    """File ``vectors`` (new images, L2-normalised) with ``predictor`` and add them to it as training
    rows; retire the rows of removed images. The parent's rows keep their clusters."""
    predictor.retire(predictor.rows_of(old.image_ids[~kept]))
    n_old = int(kept.sum())
    how_old = np.asarray(old.how_per_image(), dtype=object)[kept]
    if len(vectors):
        prediction = predictor.predict(vectors)
        clusters, probability = prediction.clusters.copy(), prediction.membership_probability.astype(np.float64)
        reasons = list(prediction.reasons)
        how = np.full(len(vectors), "filed", dtype=object)
        weak = (clusters != NOISE) & (probability < min_probability)
        for i in np.flatnonzero(weak):
            reasons[i] = f"held: membership probability {probability[i]:.2f} < {min_probability:.2f}"
        clusters[weak], probability[weak] = NOISE, 0.0
        how[clusters == NOISE] = HELD
        held_by = Counter("probability" if weak[i] else (prediction.held_by[i] if prediction.held_by else "")
                          for i in np.flatnonzero(clusters == NOISE))
        if force:
            _force(predictor, vectors, prediction, clusters, probability, how, reasons)
        xy = np.column_stack([prediction.x, prediction.y])
        predictor.extend(vectors, clusters, probability, xy, image_ids)
    else:
        clusters, probability = np.zeros(0, np.int64), np.zeros(0)
        xy, how, reasons = np.zeros((0, 2)), np.zeros(0, dtype=object), []
        held_by = Counter()
    return Filed(np.concatenate([old.image_ids[kept], image_ids]).astype(np.int64),
                 np.concatenate([old.clusters[kept], clusters]).astype(np.int64),
                 np.concatenate([old.membership_probability[kept], probability]),
                 np.concatenate([np.column_stack([old.x, old.y])[kept], xy]),
                 np.concatenate([how_old, how]), [""] * n_old + reasons, n_old,
                 np.ascontiguousarray(vectors, dtype=np.float32), dict(held_by.most_common()))


def _force(predictor: Predictor, vectors: np.ndarray, prediction: Prediction, clusters: np.ndarray,
           probability: np.ndarray, how: np.ndarray, reasons: list[str]) -> None:
    """Put each held image in the cluster of its nearest clustered training image."""
    held = np.flatnonzero(clusters == NOISE)
    if not len(held) or not np.any(predictor.clusters_ != NOISE):
        return
    k = min(len(predictor.clusters_), 200)
    similarity, rows = predictor.neighbours(vectors[held], k)
    for i, scores, found in zip(held, similarity, rows):
        usable = (found >= 0) & predictor.active_[np.maximum(found, 0)]
        usable &= predictor.clusters_[np.maximum(found, 0)] != NOISE
        if not usable.any():
            continue
        first = int(np.argmax(usable))
        clusters[i] = predictor.clusters_[found[first]]
        probability[i] = 0.0
        how[i] = FORCED
        reasons[i] = f"forced: its nearest clustered image (similarity {scores[first]:.2f}) is in this cluster"


def dense_groups(vectors: np.ndarray, min_size: int, reduce_config: ReduceConfig, min_similarity: float,
                 min_cohesion: float, min_member_similarity: float = -1.0, coarse: CoarseSplit | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, membership probabilities, the space they were found in) for L2-normalised vectors
    (n, d): groups at least ``min_cohesion`` cohesive (mean pairwise cosine similarity) with at
    least ``min_size`` members, none less similar to the rest of its group than
    ``min_member_similarity``, found by :func:`~imgcluster.cluster.cohesive.cohesive_groups`.

    Up to ``TREE_UP_TO`` points that is all; more are first split by ``coarse`` (the API passes the
    run's reducer, UMAP by default, and HDBSCAN), and each coarse group is cut by cohesion in turn
    (one larger than ``TREE_UP_TO`` is kept whole, less its strays, when cohesive enough, and left
    held otherwise).
    Cohesion, not the coarse split, decides what is proposed: UMAP on a few dozen points gives
    groups that change with the seed and with the processor (issue 21). A group is also dropped
    unless its members are as close to their nearest other member as clustered images are to
    theirs: the median, over members, of that similarity must reach ``min_similarity`` (the
    predictor's bar)."""
    n = len(vectors)
    labels = np.full(n, NOISE, dtype=np.int64)
    probabilities = np.zeros(n)
    groups = ([(np.arange(n), np.ones(n))] if n <= TREE_UP_TO or coarse is None
              else coarse(vectors, min_size, reduce_config))
    for members, coarse_probabilities in groups:
        if len(members) > TREE_UP_TO:
            sub = np.where(member_similarity(vectors[members]) >= min_member_similarity, 0, NOISE)
            if (sub == 0).sum() < min_size or mean_pairwise_similarity(vectors[members[sub == 0]]) < min_cohesion:
                log.info("a coarse group of %d held images is less cohesive than the run's clusters: left held",
                         len(members))
                continue
            sub_probabilities = coarse_probabilities
        else:
            sub = cohesive_groups(vectors[members], min_cohesion, min_size, min_member_similarity)
            sub_probabilities = neighbour_agreement(vectors[members], sub)
        first = int(labels.max(initial=NOISE)) + 1
        grouped = sub != NOISE
        labels[members[grouped]] = first + sub[grouped]
        probabilities[members[grouped]] = sub_probabilities[grouped]
    for label in set(labels.tolist()) - {NOISE}:
        members = np.flatnonzero(labels == label)
        similarity = vectors[members] @ vectors[members].T
        np.fill_diagonal(similarity, -1.0)
        if np.median(similarity.max(axis=1)) < min_similarity:
            labels[members], probabilities[members] = NOISE, 0.0
    return labels, probabilities, vectors


def propose(ws: Workspace, parent: RunRecord, config: RunConfig, result: Filed, predictor: Predictor,
            n_new: int, group: Grouping = dense_groups) -> list[ProposedCluster]:
    """Look for groups as cohesive as the run's clusters among the held new images and the run's
    unclustered images near them; each group with at least one new image becomes a proposed
    cluster (ids after the largest in use), in ``result`` and in ``predictor``."""
    held = np.flatnonzero(result.clusters[result.first_new:] == NOISE) + result.first_new
    min_size = min_cluster_size(parent)
    # The old unclustered images formed no group of this size in the fit: a new group needs new
    # images for at least half of it.
    if len(held) < max(2, min_size // 2):
        return []
    rows = np.concatenate([_unclustered_near(predictor, result, held, min_size), held])
    if len(rows) < min_size:
        return []
    old_rows = rows[rows < result.first_new]
    hashes = {r.id: r.content_hash for r in ws.images(ids=result.image_ids[old_rows].tolist())}
    old_vectors = ws.load_embeddings(parent.model_id, [hashes[i] for i in result.image_ids[old_rows].tolist()])
    vectors = np.concatenate([old_vectors.reshape(len(old_rows), predictor.index_.d),
                              result.new_vectors[rows[rows >= result.first_new] - result.first_new]])
    bar, member_bar = _cohesion_bars(ws, parent.model_id, result, predictor.index_.d)
    labels, probabilities, space = group(vectors.astype(np.float32), min_size, config.reduce,
                                         predictor.min_similarity_, bar, member_bar)
    next_id = int(max(result.clusters.max(initial=NOISE), predictor.clusters_.max(initial=NOISE))) + 1
    proposed = []
    for label in sorted(set(labels.tolist()) - {NOISE}):
        members = np.flatnonzero(labels == label)
        group = rows[members]
        if not np.any(group >= result.first_new):
            continue  # only images that were unclustered before: nothing new to say about them
        cluster = next_id + len(proposed)
        result.clusters[group] = cluster
        result.probabilities[group] = probabilities[members]
        result.how[group] = PROPOSED
        for row in group:
            result.reasons[row] = (f"proposed: one of {len(group)} held or unclustered images as alike as the run's "
                                   f"clusters' images (mean similarity at least {bar:.2f})")
        arrived = group[group >= result.first_new]
        result.xy[arrived] = _place_group(result, group, vectors[members][group >= result.first_new])
        training = predictor.rows_of(result.image_ids[group])
        ok = training >= 0
        predictor.relabel(training[ok], np.full(ok.sum(), cluster), probabilities[members][ok],
                          map_xy=result.xy[group[ok]])
        chosen = representatives(result.image_ids[group], np.zeros(len(group), np.int64), probabilities[members],
                                 space[members])
        proposed.append(ProposedCluster(cluster, len(group), int(np.sum(group >= result.first_new)),
                                        list(chosen[0].central) if chosen else []))
    log.info("proposed %d new clusters from %d held images and %d unclustered ones near them (cohesion bar %.3f)",
             len(proposed), len(held), len(rows) - len(held), bar)
    return proposed


def _place_group(result: Filed, group: np.ndarray, arrived_vectors: np.ndarray) -> np.ndarray:
    """Map positions for a proposed cluster's new images: their own 2-D layout (the group's first two
    principal components), scaled to a typical cluster's spread on the map, centred on the free
    spot nearest the group's mean position. Filing placed each at the mean of its neighbours, which
    scatters a group unlike anything in the run between the clusters it sits among."""
    from scipy.spatial import cKDTree

    placed = result.xy[group]
    clustered = result.clusters[:result.first_new] >= 0
    old_xy, old_clusters = result.xy[:result.first_new][clustered], result.clusters[:result.first_new][clustered]
    if len(arrived_vectors) < 2 or not len(old_xy):
        return result.xy[group[group >= result.first_new]]
    spreads = [np.sqrt(((old_xy[old_clusters == c] - old_xy[old_clusters == c].mean(axis=0)) ** 2).sum(axis=1).mean())
               for c in np.unique(old_clusters)]
    radius = float(np.median(spreads)) or 1e-3
    centred = arrived_vectors - arrived_vectors.mean(axis=0)
    layout = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    layout *= radius / max(float(np.sqrt((layout ** 2).sum(axis=1).mean())), 1e-12)
    # The nearest spot, on rings around the group's mean, with no old image within two radii.
    tree, centre = cKDTree(old_xy), placed.mean(axis=0)
    spot = centre
    for ring in range(1, 40):
        angles = np.linspace(0, 2 * np.pi, 8 * ring, endpoint=False)
        candidates = centre + ring * radius * np.column_stack([np.cos(angles), np.sin(angles)])
        distance, _ = tree.query(candidates)
        if distance.max() >= 2 * radius:
            spot = candidates[int(np.argmax(distance >= 2 * radius))]
            break
    return spot + layout


def _unclustered_near(predictor: Predictor, result: Filed, held: np.ndarray, min_size: int) -> np.ndarray:
    """Rows of ``result`` (the parent's images) that were unclustered and are among the nearest
    neighbours of a held image: the old noise a new group could grow from, without clustering all of it."""
    k = int(min(len(predictor.clusters_), NEAR_UNCLUSTERED))
    _, found = predictor.neighbours(result.new_vectors[held - result.first_new], k)
    found = np.unique(found[found >= 0])
    found = found[predictor.active_[found] & (predictor.clusters_[found] == NOISE)]
    wanted = set(predictor.image_ids_[found].tolist())
    old = np.arange(result.first_new)
    return old[np.fromiter((i in wanted for i in result.image_ids[:result.first_new].tolist()), bool,
                           count=result.first_new) & (result.clusters[:result.first_new] == NOISE)]


def _cohesion_bars(ws: Workspace, model_id: str, result: Filed, dim: int, seed: int = 0) -> tuple[float, float]:
    """How tight a proposed cluster must be, measured on the parent's clusters (a seeded sample of
    each one's members): (the mean pairwise cosine similarity that three in four of them reach, the
    lowest mean similarity of a member to the rest of its cluster). A quantile, not the loosest
    cluster: one loose catch-all cluster must not lower the cohesion bar for every proposal."""
    clusters = result.clusters[:result.first_new]
    ids = np.unique(clusters[clusters != NOISE])
    if not len(ids):
        return 1.0, 1.0  # no cluster to measure against: propose nothing rather than guess
    rng = np.random.default_rng(seed)
    per_cluster = max(COHESION_MIN_SAMPLE, COHESION_ROWS // len(ids))
    if len(ids) * per_cluster > COHESION_ROWS:
        ids = np.sort(rng.choice(ids, COHESION_ROWS // per_cluster, replace=False))
    samples = []
    for cluster in ids:
        rows = np.flatnonzero(clusters == cluster)
        if len(rows) >= 2:
            samples.append(np.sort(rng.choice(rows, min(len(rows), per_cluster), replace=False)))
    if not samples:
        return 1.0, 1.0
    rows = np.concatenate(samples)
    hashes = {r.id: r.content_hash for r in ws.images(ids=result.image_ids[rows].tolist())}
    vectors = ws.load_embeddings(model_id, [hashes[i] for i in result.image_ids[rows].tolist()]).reshape(-1, dim)
    starts = np.cumsum([0] + [len(s) for s in samples])
    cohesion = [mean_pairwise_similarity(vectors[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    fit = min(float(member_similarity(vectors[a:b]).min()) for a, b in zip(starts[:-1], starts[1:]))
    return float(np.quantile(cohesion, COHESION_QUANTILE)), fit


def min_cluster_size(parent: RunRecord) -> int:
    """The parent's minimum cluster size at the scale of the whole collection (a fit on a sample
    used a proportionally smaller one), so a new cluster meets the bar the old ones met."""
    clustering = parent.clustering
    if clustering.get("min_cluster_size") and clustering.get("min_cluster_size_in_sample"):
        return max(2, int(clustering["min_cluster_size"]))  # a sampled fit stores it at the collection's scale
    return collection_min_cluster_size(clustering.get("min_cluster_size"), parent.n_images,
                                       parent.config.get("reduce", {}).get("fit_sample") or 0)


def drift(held: int, total: int, key: str) -> str | None:
    """Why a full re-fit is advised when ``held`` of ``total`` images fit no cluster, else None."""
    if total and held / total > DRIFT_SHARE:
        return (f"{held:,} of {total:,} images ({held / total:.0%}) are held outside every cluster: the clusters "
                f"no longer describe this collection. Run `imgcluster cluster --follow {key}` for a full "
                "re-fit that keeps the ids and names of the clusters it finds again.")
    return None


def carried_representatives(parent: RunRecord, result: Filed, proposed: set[int]) -> list[Representatives]:
    """The parent's representatives, minus images no longer in the collection."""
    present = set(result.image_ids.tolist())
    return [Representatives(r.cluster, *([i for i in getattr(r, kind) if i in present] for kind in KINDS))
            for r in parent.representatives if r.cluster not in proposed]


def write_predictor(ws: Workspace, parent_key: str, key: str, predictor: Predictor) -> None:
    """Share the parent's index file and save only the rows filed since it was built, until those
    pass ``REBUILD_SHARE`` of it; then write the whole index again."""
    arrays, params = predictor.delta_state()
    if len(predictor.added_) <= REBUILD_SHARE * params["index_rows"]:
        ws.write_predictor(key, arrays, None, params, index_from=parent_key)
    else:
        ws.write_predictor(key, *predictor.state())


def draft(ws: Workspace, parent: RunRecord, result: Filed, predictor: Predictor, proposed: list[ProposedCluster],
          key: str, provenance: Provenance, *, name: NameStep, skipped: int = 0,
          timings: dict[str, float] | None = None, catalogue: Mapping[int, ImageRecord] | None = None) -> Draft:
    """``result`` as a draft of a run derived from ``parent`` (``provenance``: an update or a
    review). Cluster ids keep their meaning, so the parent's names carry over; ``name`` names the
    proposed clusters. ``catalogue`` holds the images' records by id when the caller has them (an
    update's scan does); otherwise they are read from the store. A review's rejected proposals
    (``provenance.details["rejected"]``) leave nothing behind: no representatives, no names."""
    by_id = catalogue if catalogue is not None else {r.id: r for r in ws.images(ids=result.image_ids.tolist())}
    images: list[ImageRecord] = [by_id[i] for i in result.image_ids.tolist()]
    rejected = set(provenance.details.get("rejected", ()))
    chosen_images = carried_representatives(parent, result, set(c.cluster for c in proposed) | rejected)
    chosen_images += [Representatives(p.cluster, p.representatives, p.representatives, []) for p in proposed]
    base = derived_record(
        parent, key, provenance, embedding=Embedded(provenance.details.get("new_images", 0), 0), skipped=skipped,
        proposed=list(proposed),
        reasons={int(i): r for i, r in zip(result.image_ids.tolist(), result.reasons) if r})
    assignments = Assignments(result.image_ids, result.clusters, result.probabilities, result.xy[:, 0],
                              result.xy[:, 1], result.how)
    # The parent's clustering space is not kept; a derived run's silhouette is measured on the map
    # (on 2,000 points: on a 2-D map that is as telling as 5,000, and a sixth of the work).
    return Draft(base, images, assignments, result.xy,
                 lambda ws, key: write_predictor(ws, parent.key, key, predictor),
                 names=[n for n in ws.names(parent.key) if n.cluster not in rejected],
                 name=name, representatives=chosen_images, on_map=True, metrics_sample=2_000,
                 timings=dict(timings or {}))


def review(ws: Workspace, parent: RunRecord, accept: Sequence[int], reject: Sequence[int]) -> tuple[Filed, Predictor]:
    """``parent``'s images with the proposals in ``accept`` made ordinary clusters and those in
    ``reject`` held again, and its predictor relabelled to match."""
    old = ws.assignments(parent.key)
    clusters = old.clusters.copy()
    probabilities = np.asarray(old.membership_probability, dtype=np.float64).copy()
    how = np.asarray(old.how_per_image(), dtype=object)
    predictor = Predictor.from_state(*ws.read_predictor(parent.key))
    for cluster in accept:
        how[clusters == cluster] = ACCEPTED
    for cluster in reject:
        rows = np.flatnonzero(clusters == cluster)
        clusters[rows], probabilities[rows], how[rows] = NOISE, 0.0, HELD
        training = predictor.rows_of(old.image_ids[rows])
        ok = training >= 0
        predictor.relabel(training[ok], np.full(ok.sum(), NOISE), np.zeros(ok.sum()))
    result = Filed(old.image_ids, clusters, probabilities, np.column_stack([old.x, old.y]), how,
                   [""] * len(clusters), len(clusters), np.zeros((0, 1), np.float32))
    return result, predictor
