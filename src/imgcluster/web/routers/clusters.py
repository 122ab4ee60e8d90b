"""Clusters of a run: list (names, sizes, stability, proposed or not), their images page by page,
and edits: rename, merge, split, move images, accept or reject proposed clusters (all but rename save a
new derived run)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field

from ... import api
from ...cluster import NOISE
from ...errors import ConfigError
from ...label import choose_names
from ...palette import NOISE_COLOUR, cluster_colour, palette
from ...store.browse import images_by_id
from ..state import cluster_label
from .deps import RUN_KEY, ExplorerDep, RunQuery

router = APIRouter(tags=["clusters"])
ClusterId = Annotated[int, Path(ge=-1, le=2**31 - 1, description="Cluster id; -1 is the unclustered images.")]
# Bounds stop ids numpy cannot hold (int64) before they reach the arrays.
ClusterNumber = Annotated[int, Field(ge=-1, le=2**31 - 1)]
ImageNumber = Annotated[int, Field(ge=1, le=2**62)]


@router.get("/palette", summary="The palette the clusters' colours come from (each cluster's own colour is in "
                                "/api/clusters), unclustered is noise")
def cluster_palette() -> dict[str, Any]:
    return {"colours": palette(), "noise": NOISE_COLOUR}


@router.get("/clusters", summary="A run's clusters: name, size, mean membership probability, stability")
def list_clusters(ex: ExplorerDep, run: RunQuery = None) -> dict[str, Any]:
    record = ex.record(run)
    colours = ex.colours(record)
    with ex.db() as ws:
        names = choose_names(ws.names(record.key))
        measured = ws.stability(record.key)
    stability = {c["cluster"]: c for c in measured[-1]["clusters"]} if measured else {}
    proposed = {p.cluster for p in record.proposed}  # by `imgcluster update`
    rows = []
    for summary in record.clusters:
        cluster = summary.cluster
        name = names.get(cluster)
        rows.append({"cluster": cluster, "name": cluster_label(cluster, name.name if name else None),
                     "named_by": name.source if name else None, "name_level": name.level if name else None,
                     "size": summary.size,
                     "mean_membership_probability": summary.mean_membership_probability,
                     "stability": stability.get(cluster, {}).get("stability"),
                     "unstable": stability.get(cluster, {}).get("unstable"),
                     "proposed": cluster in proposed,
                     "representative": (summary.representatives or [None])[0],
                     "colour": NOISE_COLOUR if cluster == NOISE else colours.get(cluster, cluster_colour(cluster))})
    return {"run": record.key, "clusters": rows}


@router.get("/clusters/{cluster}/images", summary="A page of a cluster's images, most probable members first")
def cluster_images(ex: ExplorerDep, cluster: ClusterId, run: RunQuery = None, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=500)] = 60
                   ) -> dict[str, Any]:
    view = ex.view(run)
    members = view.members(cluster)
    rows = members[offset:offset + limit]
    ids = view.image_ids[rows].tolist()
    with ex.db() as ws:
        records = images_by_id(ws, ids)
    how = ex.how(view, ids)
    images = [{"id": i, "name": os.path.basename(records[i].path) if i in records else "",
               "membership_probability": round(float(view.membership_probability[r]), 4), "how": how.get(i)}
              for i, r in zip(ids, rows.tolist())]
    return {"run": view.record.key, "cluster": cluster, "total": len(members), "offset": offset,
            "images": images}


class NewName(BaseModel):
    name: str = Field(max_length=200, description="The cluster's new name; empty removes your name again.")


@router.put("/clusters/{cluster}/name", summary="Name a cluster yourself (wins over automatic names)")
def rename(ex: ExplorerDep, cluster: ClusterId, body: NewName, run: RunQuery = None
           ) -> dict[str, Any]:
    record = ex.record(run)
    if cluster == NOISE:
        raise ConfigError("Unclustered images (-1) cannot be named.")
    shown = api.name_cluster(cluster, body.name, record.key, workspace=ex.workspace)
    return {"run": record.key, "cluster": cluster, "name": cluster_label(cluster, shown.name if shown else None),
            "named_by": shown.source if shown else None}


class Merge(BaseModel):
    run: str | None = Field(None, pattern=RUN_KEY, description="The run to edit; the newest with clusters when absent.")
    clusters: list[ClusterNumber] = Field(min_length=2, description="Clusters to merge.")
    into: ClusterNumber | None = Field(None, description="The id the merged cluster keeps (default: the first).")


@router.post("/clusters/merge", summary="Merge clusters; saved as a new run derived from the edited one")
def merge(ex: ExplorerDep, body: Merge) -> dict[str, Any]:
    parent = ex.record(body.run)
    derived = api.merge_clusters(body.clusters, parent.key, into=body.into, workspace=ex.workspace)
    return {"run": derived.key, "parent": parent.key, "n_clusters": derived.record.n_clusters}


class Split(BaseModel):
    run: str | None = Field(None, pattern=RUN_KEY, description="The run to edit; the newest with clusters when absent.")
    k: int = Field(2, ge=2, le=50, description="How many parts to re-cluster the cluster's images into.")


@router.post("/clusters/{cluster}/split", summary="Split a cluster into k (k-means on its images' embeddings); "
                                                  "saved as a new derived run")
def split(ex: ExplorerDep, cluster: ClusterId, body: Split) -> dict[str, Any]:
    parent = ex.record(body.run)
    derived = api.split_cluster(cluster, body.k, parent.key, workspace=ex.workspace)
    edit = derived.record.provenance.details
    return {"run": derived.key, "parent": parent.key, "n_clusters": derived.record.n_clusters,
            "clusters": edit["into"]}


class SplitOff(BaseModel):
    run: str | None = Field(None, pattern=RUN_KEY, description="The run to edit; the newest with clusters when absent.")
    image_ids: list[ImageNumber] = Field(min_length=1, max_length=1_000_000,
                                         description="Catalogue ids of the images that become a new cluster.")


@router.post("/clusters/new", summary="Split chosen images off into a new cluster; saved as a new derived run")
def split_off(ex: ExplorerDep, body: SplitOff) -> dict[str, Any]:
    parent = ex.record(body.run)
    derived = api.split_off(body.image_ids, parent.key, workspace=ex.workspace)
    return {"run": derived.key, "parent": parent.key, "n_clusters": derived.record.n_clusters,
            "cluster": derived.record.provenance.details["cluster"]}


class Move(BaseModel):
    run: str | None = Field(None, pattern=RUN_KEY, description="The run to edit; the newest with clusters when absent.")
    image_ids: list[ImageNumber] = Field(min_length=1, max_length=1_000_000,
                                         description="Catalogue ids of images to move.")


@router.post("/clusters/{cluster}/images", summary="Move images into a cluster; saved as a new derived run")
def move(ex: ExplorerDep, cluster: ClusterId, body: Annotated[Move, Body()]) -> dict[str, Any]:
    parent = ex.record(body.run)
    derived = api.move_images(body.image_ids, cluster, parent.key, workspace=ex.workspace)
    return {"run": derived.key, "parent": parent.key, "n_clusters": derived.record.n_clusters}


class Review(BaseModel):
    run: str | None = Field(None, pattern=RUN_KEY, description="The run whose proposals to review; the newest when absent.")
    accept: list[ClusterNumber] = Field([], max_length=10_000, description="Proposed clusters to keep as clusters.")
    reject: list[ClusterNumber] = Field([], max_length=10_000,
                                        description="Proposed clusters whose images go back to held (unclustered).")


@router.post("/clusters/proposals", summary="Accept or reject clusters an update proposed; saved as a new derived run")
def review(ex: ExplorerDep, body: Review) -> dict[str, Any]:
    parent = ex.record(body.run)
    if not body.accept and not body.reject:
        raise ConfigError("Name at least one proposed cluster to accept or reject.")
    derived = api.review_proposals(accept=body.accept, reject=body.reject, run=parent.key, workspace=ex.workspace)
    return {"run": derived.record.key, "parent": parent.key, "accepted": body.accept, "rejected": body.reject,
            "n_clusters": derived.record.n_clusters}
