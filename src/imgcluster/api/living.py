"""A living collection: file new images into a run's clusters, keep every cluster id, propose new
clusters from what does not fit, and say when the collection has drifted enough to refit.

Each update is a new run derived from the old one (``info["update"]["parent"]``): the parent stays
as it was, so the two can be compared, and nothing is renumbered. An image in the parent keeps its
cluster; a removed file leaves its cluster without renumbering the others.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import NOISE
from ..cluster.cohesive import (TREE_UP_TO, cohesive_groups, mean_pairwise_similarity, member_similarity,
                                neighbour_agreement)
from ..cluster.openset import check_held_quantile
from ..cluster.predictor import Prediction, Predictor
from ..cluster.settings import collection_min_cluster_size
from ..config import ClusterConfig, EmbedConfig, ReduceConfig, RunConfig
from ..embed import recorded_settings
from ..errors import ConfigError, ModelUnavailable, NoImages
from ..label import choose_names
from ..represent import representatives
from ..runs import answer_warnings, internal_metrics, new_run_key, package_versions, summarise_clusters
from ..store import Assignments, ClusterName, ImageRecord, RunRecord, Workspace
from . import job, naming
from .steps import (Run, StageProgress, _no_images_message, _stage_progress, check_has_clusters, embed, fit_clusters,
                    open_workspace, scan)

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class ProposedCluster:
    """A dense group among held and unclustered images, offered as a new cluster."""

    cluster: int
    size: int
    new_images: int         # of them, images filed by this update
    representatives: list[int]


@dataclass(frozen=True)
class Update:
    """What :func:`update` did: the derived run, and how its images got there."""

    run: Run
    parent: str
    n_new: int
    n_removed: int
    n_filed: int
    n_held: int
    n_forced: int
    proposed: list[ProposedCluster]
    drift: str | None       # why a full re-fit is advised, or None
    seconds: dict[str, float]
    saved: bool = True      # False when nothing changed: ``run`` is then the parent itself
    n_changed: int = 0      # files rewritten since the parent run, filed again
    # Held new images by the test they failed: far (from every image), density or agreement (below
    # their cluster's own members), unclustered (their nearest images are), probability (below
    # min_probability); counted before proposals and --force take some of them.
    held_by: dict[str, int] = dataclasses.field(default_factory=dict)


def update(path: str | os.PathLike[str], *, run: str | None = None, workspace: str | os.PathLike[str] | None = None,
           min_probability: float = 0.0, force: bool = False, propose: bool = True, run_key: str | None = None,
           progress: StageProgress | None = None, held_quantile: float | None = None) -> Update:
    """Scan ``path`` again, embed only new or changed files with the run's model, file them into the
    run's clusters (when ``run`` is None, the newest run with clusters; a run without clusters is
    refused, naming those that have some) and save the result as a new derived run.

    A new image is *filed* when the run's predictor assigns it with membership probability of at
    least ``min_probability``; otherwise it is *held* as unassigned, or, with ``force``, put in the
    cluster of its nearest clustered image (*forced*, that similarity recorded as the reason). With
    ``propose``, dense groups among held and unclustered images become new clusters (*proposed*),
    with new ids, to accept or reject with :func:`review_proposals`. A new image is also held when it
    is less typical of the cluster it would join than the run's ``held_quantile`` of that cluster's
    own members (``ClusterConfig.held_quantile``; this argument overrides it, 0 turns it off).
    """
    check_held_quantile(held_quantile)
    if not 0.0 <= min_probability <= 1.0:
        raise ConfigError(f"min_probability must be between 0 and 1; got {min_probability}.")
    if not Path(path).expanduser().exists():
        raise NoImages(f"{path} does not exist. Give the folder the run clustered.")
    stage = _stage_progress(progress)
    seconds: dict[str, float] = {}
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        parent = ws.run(run)
        check_has_clusters(ws, parent, "take new images")
        job._check_new_key(ws, run_key)
        config = RunConfig.from_dict(parent.config)
        started = time.perf_counter()
        found = scan(path, workspace=ws, config=config.scan, progress=stage("scan"))
        seconds["scan"] = time.perf_counter() - started
        if not found.images:
            raise NoImages(_no_images_message(found))
        old = ws.assignments(parent.key)
        # A file rewritten since the run keeps its id but has bytes the run's model never embedded:
        # it leaves its old place and is filed again, like a new image.
        embedded_before = ws.embedded_hashes(parent.model_id)
        changed = {r.id for r in found.images if r.content_hash not in embedded_before}
        present = {r.id for r in found.images} - changed
        known = set(old.image_ids.tolist())
        kept = np.fromiter((i in present for i in old.image_ids.tolist()), dtype=bool, count=len(old.image_ids))
        new_records = [r for r in found.images if r.id not in known or r.id in changed]
        n_changed = len(changed & known)
        if not new_records and kept.all():
            log.info("nothing new or removed under %s since run %s", found.root, parent.key)
            return Update(job._stored_run(ws, parent), parent.key, 0, 0, 0, 0, 0, [], None, seconds, saved=False,
                          n_changed=0)

        started = time.perf_counter()
        embedded = embed(new_records, workspace=ws, config=_run_embed_config(parent, config.embed),
                         progress=stage("embed"))
        if embedded.images and embedded.model["model_id"] != parent.model_id:
            raise ModelUnavailable(f"Run {parent.key} was made with {parent.model_id}, but {parent.model_name} now "
                                   f"loads as {embedded.model['model_id']}. Run `imgcluster cluster` to refit.")
        seconds["embed"] = time.perf_counter() - started

        started = time.perf_counter()
        predictor = Predictor.from_state(*_read_predictor(ws, parent.key))
        if held_quantile is not None:
            predictor.held_quantile = held_quantile
        result = file_new(predictor, old, kept, embedded.vectors, np.asarray([r.id for r in embedded.images]),
                          min_probability, force)
        seconds["file"] = time.perf_counter() - started
        proposed: list[ProposedCluster] = []
        if propose:
            started = time.perf_counter()
            proposed = _propose(ws, parent, config, result, predictor, len(embedded.images))
            seconds["propose"] = time.perf_counter() - started
        n_removed = int((~kept).sum()) - n_changed
        derived = _save_derived(ws, parent, found, result, predictor, proposed, seconds,
                                run_key or new_run_key(), n_new=len(embedded.images) - n_changed,
                                n_removed=n_removed, stage=stage, n_changed=n_changed,
                                catalogue={r.id: r for r in found.images})
        held = int(np.sum(result.how == HELD))
        return Update(derived, parent.key, len(embedded.images) - n_changed, n_removed,
                      int(np.sum(result.how[result.first_new:] == "filed")), held,
                      int(np.sum(result.how[result.first_new:] == FORCED)), proposed,
                      _drift(held, len(derived.images), derived.record.key), seconds, n_changed=n_changed,
                      held_by=dict(result.held_by))
    finally:
        ws.close()


def _run_embed_config(parent: RunRecord, config: EmbedConfig) -> EmbedConfig:
    return dataclasses.replace(config, model=parent.model_name, **recorded_settings(parent.info.get("model", {})))


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


def _propose(ws: Workspace, parent: RunRecord, config: RunConfig, result: Filed, predictor: Predictor,
             n_new: int) -> list[ProposedCluster]:
    """Look for groups as cohesive as the run's clusters among the held new images and the run's
    unclustered images near them; each group with at least one new image becomes a proposed
    cluster (ids after the largest in use), in ``result`` and in ``predictor``."""
    held = np.flatnonzero(result.clusters[result.first_new:] == NOISE) + result.first_new
    min_size = _min_cluster_size(parent)
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
    labels, probabilities, space = dense_groups(vectors.astype(np.float32), min_size, config.reduce,
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
        predictor.relabel(training[ok], np.full(ok.sum(), cluster), probabilities[members][ok])
        predictor.map_[training[ok]] = result.xy[group[ok]]
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


def dense_groups(vectors: np.ndarray, min_size: int, reduce_config: ReduceConfig, min_similarity: float,
                 min_cohesion: float, min_member_similarity: float = -1.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, membership probabilities, the space they were found in) for L2-normalised vectors
    (n, d): groups at least ``min_cohesion`` cohesive (mean pairwise cosine similarity) with at
    least ``min_size`` members, none less similar to the rest of its group than
    ``min_member_similarity``, found by :func:`~imgcluster.cluster.cohesive.cohesive_groups`.

    Up to ``TREE_UP_TO`` points that is all; more are first split by the run's reducer (UMAP by
    default) and HDBSCAN, and each coarse group is cut by cohesion in turn (one larger than
    ``TREE_UP_TO`` is kept whole, less its strays, when cohesive enough, and left held otherwise).
    Cohesion, not the coarse split, decides what is proposed: UMAP on a few dozen points gives
    groups that change with the seed and with the processor (issue 21). A group is also dropped
    unless its members are as close to their nearest other member as clustered images are to
    theirs: the median, over members, of that similarity must reach ``min_similarity`` (the
    predictor's bar)."""
    n = len(vectors)
    labels = np.full(n, NOISE, dtype=np.int64)
    probabilities = np.zeros(n)
    for members, coarse_probabilities in _coarse_groups(vectors, min_size, reduce_config):
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


def _coarse_groups(vectors: np.ndarray, min_size: int,
                   reduce_config: ReduceConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, HDBSCAN probabilities) of each group the run's recipe finds in more than
    ``TREE_UP_TO`` points; all rows as one group up to that."""
    n = len(vectors)
    if n <= TREE_UP_TO:
        return [(np.arange(n), np.ones(n))]
    _, clustering = fit_clusters(
        vectors, dataclasses.replace(reduce_config, fit_sample=0, map_method="pca"),
        ClusterConfig(method="hdbscan", min_cluster_size=min_size, noise="keep"))
    return [(np.flatnonzero(clustering.labels == label), clustering.probabilities[clustering.labels == label])
            for label in sorted(set(clustering.labels.tolist()) - {NOISE})]


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


def _min_cluster_size(parent: RunRecord) -> int:
    """The parent's minimum cluster size at the scale of the whole collection (a fit on a sample
    used a proportionally smaller one), so a new cluster meets the bar the old ones met."""
    return collection_min_cluster_size(parent.info.get("clustering", {}).get("min_cluster_size"), parent.n_images,
                                       parent.config.get("reduce", {}).get("fit_sample") or 0)


def _drift(held: int, total: int, key: str) -> str | None:
    if total and held / total > DRIFT_SHARE:
        return (f"{held:,} of {total:,} images ({held / total:.0%}) are held outside every cluster: the clusters "
                f"no longer describe this collection. Run `imgcluster cluster --follow {key}` for a full "
                "re-fit that keeps the ids and names of the clusters it finds again.")
    return None


def _read_predictor(ws: Workspace, key: str) -> tuple[dict[str, np.ndarray], Path, dict[str, Any]]:
    return ws.read_predictor(key)


def _save_derived(ws: Workspace, parent: RunRecord, found: Any, result: Filed, predictor: Predictor,
                  proposed: list[ProposedCluster], seconds: dict[str, float], key: str, *, n_new: int,
                  n_removed: int, stage: Any, reviewed: dict[str, list[int]] | None = None,
                  n_changed: int = 0, catalogue: Mapping[int, ImageRecord] | None = None) -> Run:
    """Save ``result`` as a run derived from ``parent``. ``catalogue`` holds the images' records by
    id when the caller has them (an update's scan does); otherwise they are read from the store."""
    by_id = catalogue if catalogue is not None else {r.id: r for r in ws.images(ids=result.image_ids.tolist())}
    images: list[ImageRecord] = [by_id[i] for i in result.image_ids.tolist()]
    started = time.perf_counter()
    summaries = summarise_clusters(result.image_ids, result.clusters, result.probabilities, result.xy)
    # The parent's clustering space is not kept; a derived run's silhouette is measured on the map
    # (on 2,000 points: on a 2-D map that is as telling as 5,000, and a sixth of the work).
    metrics = {**internal_metrics(result.xy, result.clusters, result.probabilities, sample=2_000),
               "silhouette_on": "map"}
    chosen_images = _carried_representatives(parent, result, set(c.cluster for c in proposed))
    chosen_images += [{"cluster": p.cluster, "central": p.representatives, "probable": p.representatives,
                       "diverse": []} for p in proposed]
    info = dict(parent.info)
    info.update({
        "metrics": metrics, "versions": package_versions(), "timings": seconds,
        "warnings": answer_warnings(len(images), metrics, parent.info.get("clustering", {}),
                                    parent.config.get("preset")),
        "clusters": [dataclasses.asdict(s) for s in summaries], "representatives": chosen_images,
        "embedding": {"new": n_new, "cached": 0}, "skipped": len(found.skipped),
        "update": {"parent": parent.key, "new_images": n_new, "removed_images": n_removed,
                   "changed_images": n_changed,
                   "proposed": [dataclasses.asdict(p) for p in proposed],
                   "reasons": {int(i): r for i, r in zip(result.image_ids.tolist(), result.reasons) if r},
                   **({"reviewed": reviewed} if reviewed else {})},
    })
    record = RunRecord(key=key, created_at=time.time(), root=parent.root, model_id=parent.model_id,
                       model_name=parent.model_name, n_images=len(images), n_clusters=metrics["n_clusters"],
                       config=parent.config, info=info)
    assignments = Assignments(result.image_ids, result.clusters, result.probabilities, result.xy[:, 0],
                              result.xy[:, 1], result.how)
    _write_predictor(ws, parent.key, key, predictor)
    names = ws.names(parent.key)  # ids keep their meaning, so names carry over
    names += _name_proposals(ws, parent, record, images, assignments, [p.cluster for p in proposed])
    chosen = choose_names(names)
    writing = time.perf_counter()
    outputs = job._write_outputs(ws, record, images, assignments, [], chosen, progress=stage("report"))
    seconds["outputs"] = time.perf_counter() - writing  # the report and tables, O(all images)
    seconds["save"] = time.perf_counter() - started - seconds["outputs"]
    ws.save_run(record, assignments, names)
    return Run(record, ws.path, images, assignments, [], outputs, chosen)


def _name_proposals(ws: Workspace, parent: RunRecord, record: RunRecord, images: list[ImageRecord],
                    assignments: Assignments, clusters: list[int]) -> list[ClusterName]:
    """Names for the proposed clusters, from the namer that named the parent's; a failure leaves
    them numbered and never costs the update."""
    naming_info = parent.info.get("naming", {})
    namer = naming_info.get("named_by") or naming_info.get("namer")
    if not clusters or not namer or namer == "none":
        return []
    try:
        return naming._run_namer(ws, record, images, assignments, RunConfig.from_dict(parent.config).name, namer,
                                 clusters=clusters)
    except Exception as error:  # the filing is done; a namer must not undo it
        log.warning("Naming the proposed clusters with %s failed (%s).", namer, error)
        return []


def _carried_representatives(parent: RunRecord, result: Filed, proposed: set[int]) -> list[dict[str, Any]]:
    """The parent's representatives, minus images no longer in the collection."""
    present = set(result.image_ids.tolist())
    carried = []
    for rep in parent.info.get("representatives", []):
        if rep["cluster"] in proposed:
            continue
        carried.append({key: ([i for i in value if i in present] if isinstance(value, list) else value)
                        for key, value in rep.items()})
    return carried


def _write_predictor(ws: Workspace, parent_key: str, key: str, predictor: Predictor) -> None:
    """Share the parent's index file and save only the rows filed since it was built, until those
    pass ``REBUILD_SHARE`` of it; then write the whole index again."""
    arrays, params = predictor.delta_state()
    if len(predictor.added_) <= REBUILD_SHARE * params["index_rows"]:
        ws.write_predictor(key, arrays, None, params, index_from=parent_key)
    else:
        ws.write_predictor(key, *predictor.state())


def review_proposals(*, accept: list[int] | tuple[int, ...] = (), reject: list[int] | tuple[int, ...] = (),
                     run: str | None = None, path: str | os.PathLike[str] | None = None,
                     workspace: str | os.PathLike[str] | None = None, run_key: str | None = None) -> Run:
    """Accept or reject the new clusters an update proposed, as a new run derived from it.

    Accepted clusters keep their ids and become ordinary clusters; a rejected one's images go back
    to being held (unclustered). Proposals not named stay proposed."""
    ws = open_workspace(path, workspace=workspace)
    try:
        ws.lock()
        parent = ws.run(run)
        job._check_new_key(ws, run_key)
        pending = {p["cluster"] for p in parent.info.get("update", {}).get("proposed", [])}
        unknown = sorted((set(accept) | set(reject)) - pending)
        if unknown:
            raise ConfigError(f"Run {parent.key} proposes no cluster {unknown}; it proposes "
                              f"{sorted(pending) or 'none'}. `imgcluster update` makes proposals.")
        if set(accept) & set(reject):
            raise ConfigError(f"Clusters {sorted(set(accept) & set(reject))} are both accepted and rejected.")
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
        still = [p for p in parent.info["update"]["proposed"] if p["cluster"] not in set(accept) | set(reject)]
        proposed = [ProposedCluster(**p) for p in still]
        return _save_derived(ws, parent, _NoScan(), result, predictor, proposed, {}, run_key or new_run_key(),
                             n_new=0, n_removed=0, stage=_stage_progress(None),
                             reviewed={"accepted": list(accept), "rejected": list(reject)})
    finally:
        ws.close()


class _NoScan:
    skipped: list[ImageRecord] = []
