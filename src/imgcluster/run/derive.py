"""Derivations: a run made from another run, as a draft for ``save_run``. A fit that follows an
earlier run takes its cluster ids (``follow``); an edit relabels a run's images (``edit``); an
update's filing and a proposal review build their drafts on ``derived_record``."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cluster import NOISE
from ..cluster.predictor import Predictor
from ..label import MANUAL
from ..store import Assignments, ClusterName, Provenance, RunRecord, Workspace
from ..store.records import EDIT, FOLLOW
from .compare import contingency, match_clusters
from .record import Run
from .save import Draft

log = logging.getLogger(__name__)


def derived_record(parent: RunRecord, key: str, provenance: Provenance, **changes: Any) -> RunRecord:
    """The record a run derived from ``parent`` starts from: the parent's config, model, clusterer,
    naming and counts under ``key``, with ``provenance`` and no proposals or reasons of its own
    unless ``changes`` give them (``changes`` replace any other field too)."""
    fresh = {"proposed": [], "reasons": {}, "timings": {}}
    return dataclasses.replace(parent, key=key, provenance=provenance, **{**fresh, **changes})


def follow(ws: Workspace, earlier: RunRecord, image_ids: np.ndarray,
           labels: np.ndarray) -> tuple[np.ndarray, Provenance, list[ClusterName]]:
    """``labels`` (aligned with ``image_ids``) renumbered to the ids of ``earlier``'s clusters
    (Hungarian matching on Jaccard over the images both runs hold, as ``compare_runs`` matches them),
    the matching as the new run's provenance, and ``earlier``'s names the new run keeps: the manual
    names of the matched clusters, the automatic ones of those that barely changed (``kept_names``).
    Clusters with no counterpart get ids above every earlier one: an id never means two things."""
    old = ws.assignments(earlier.key)
    ids = np.asarray(image_ids, dtype=np.int64)
    found = np.clip(np.searchsorted(old.image_ids, ids), 0, max(len(old.image_ids) - 1, 0))
    shared = (old.image_ids[found] == ids) if len(old.image_ids) else np.zeros(len(ids), dtype=bool)
    labels = np.asarray(labels, dtype=np.int64)
    new_clusters, old_clusters, table = contingency(labels[shared], np.asarray(old.clusters)[found[shared]])
    matches = match_clusters(new_clusters, old_clusters, table)
    rename = {NOISE: NOISE} | {m.a: m.b for m in matches}
    next_id = int(np.max(old.clusters, initial=NOISE)) + 1
    unmatched = [int(c) for c in np.unique(labels) if int(c) not in rename]
    rename.update({c: next_id + i for i, c in enumerate(unmatched)})
    present, inverse = np.unique(labels, return_inverse=True)
    relabelled = np.asarray([rename[int(c)] for c in present], dtype=np.int64)[inverse.reshape(-1)]
    kept = {m.b for m in matches}
    new_sizes = dict(zip(*(a.tolist() for a in np.unique(labels, return_counts=True))))
    old_sizes = dict(zip(*(a.tolist() for a in np.unique(np.asarray(old.clusters), return_counts=True))))

    def whole(m: Any) -> float:
        # Over every image of both clusters, the ones only one run holds included: a cluster that
        # grew by many new images (50 daisies + 400 new tulips) has changed, whatever the shared part says.
        union = new_sizes.get(m.a, 0) + old_sizes.get(m.b, 0) - m.overlap
        return m.overlap / union if union else 0.0

    details = {"shared_images": int(shared.sum()),
               "matched": [{"cluster": m.b, "jaccard": round(m.jaccard, 3), "shared": m.overlap,
                            "jaccard_all": round(whole(m), 3)} for m in matches],
               "new_clusters": sorted(rename[c] for c in unmatched),
               "ended": sorted(int(c) for c in old_clusters if c != NOISE and int(c) not in kept)}
    log.info("following run %s: %d clusters keep its ids, %d are new, %d of its clusters have no counterpart",
             earlier.key, len(matches), len(unmatched), len(details["ended"]))
    provenance = Provenance(FOLLOW, earlier.key, details)
    carried = [dataclasses.replace(n, created_at=time.time()) for n in ws.names(earlier.key)
               if n.source == MANUAL and n.cluster in kept] + kept_names(ws, provenance)
    return relabelled, provenance, carried


# A followed run keeps a matched cluster's automatic name from this Jaccard with its counterpart on.
# Hennig (2007) reads a cluster found again at a mean Jaccard of 0.75 as stable and 0.85 as highly
# stable; and the namer reads members chosen by content hash (``label.base.sample_by_hash``, a
# min-hash), so at 0.8 about four in five of the members it looks at are the same ones: a new name
# would be the namer's wobble (an unrecognised cluster at 0.95 went from "nematode or corkscrew?" to
# "cleaver?" because the other clusters changed), not a different cluster.
KEEP_NAME = 0.8


def kept_names(ws: Workspace, provenance: Provenance) -> list[ClusterName]:
    """The automatic names a followed run keeps (none for another kind of run): those of the
    followed run's clusters matched at a Jaccard of at least ``KEEP_NAME``, both over the images both
    runs hold and over all of each cluster's images (a cluster that grew by many new images changed), with their text, source, confidence and candidates; the namer names only the others, and
    tells its names apart from these."""
    if provenance.how != FOLLOW or provenance.parent is None:
        return []
    alike = {int(m["cluster"]) for m in provenance.details.get("matched", ())
             if min(m["jaccard"], m.get("jaccard_all", m["jaccard"])) >= KEEP_NAME}
    # Their times stay as they were: of two sources' names the newer is still the one shown.
    return [n for n in ws.names(provenance.parent)
            if n.source != MANUAL and n.cluster in alike and n.name and n.error is None]


def edit(ws: Workspace, parent: Run, key: str, labels: np.ndarray, probabilities: np.ndarray,
         how: Sequence[str], details: dict[str, Any], *, dropped: set[int]) -> Draft:
    """A draft of ``parent`` with its images relabelled by hand (``details``: the edit's action and
    arguments). Nothing is refitted: the map stays, the parent's predictor is relabelled, and names
    carry over except those of ``dropped`` clusters (merged away) and failed tries."""
    started = time.perf_counter()
    ids = np.asarray(parent.assignments.image_ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    xy = np.column_stack([parent.assignments.x, parent.assignments.y]).astype(np.float64)
    assignments = Assignments(ids, labels, probabilities, parent.assignments.x, parent.assignments.y,
                              np.asarray(list(how), dtype=object))

    def write_predictor(ws: Workspace, key: str) -> None:
        predictor = Predictor.from_state(*ws.read_predictor(parent.key))
        rows = predictor.rows_of(ids)
        present = rows >= 0
        predictor.relabel(rows[present], labels[present], probabilities[present])
        arrays, params = predictor.delta_state()
        ws.write_predictor(key, arrays, None, params, index_from=parent.key)

    names = [n for n in ws.names(parent.key) if n.cluster not in dropped and n.error is None]
    base = derived_record(parent.record, key, Provenance(EDIT, parent.key, details))
    # The parent's clustering space is not stored: summaries and silhouette use the 2-D map.
    return Draft(base, list(parent.images), assignments, xy, write_predictor, names=names,
                 skipped=parent.skipped, on_map=True, timings={"edit": time.perf_counter() - started})
