"""A run's cluster tree, served once per run, and each map point's leaf of it, on first need: the page cuts
the tree at any level itself, with no request per step."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ... import api
from .deps import ExplorerDep, RunQuery
from .runs import Key

router = APIRouter(tags=["tree"])


@router.get("/tree", summary="A run's cluster tree: its clusters as leaves, merged up to the whole collection")
def cluster_tree(ex: ExplorerDep, run: RunQuery = None) -> dict[str, Any]:
    """Every node (id, parent, children, size, height, persistence, name, and ``k``: the finest cut it
    is a cluster of), the default and coarse cuts' sizes and why the default is what it is."""
    return api.cluster_tree(ex.record(run).key, workspace=ex.workspace)


@router.get("/runs/{key}/leaves", summary="Each map point's leaf of the run's cluster tree, one byte a point",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "n uint8 in the map's order (/runs/{key}/map): a point's leaf is "
                                            "the tree's leaves under its cluster, ascending, at that place (0 for "
                                            "a cluster that is one leaf and for unclustered points)."}})
def run_leaves(ex: ExplorerDep, key: Key) -> Response:
    """Asked by the page only when its slider first goes below the run's clusters, so the map's first
    frame never waits for it: a run without finer leaves sends zeros."""
    body = ex.leaf_bytes(key)
    return Response(body, media_type="application/octet-stream",
                    headers={"X-Points": str(len(body)), "Cache-Control": "private, max-age=86400"})
