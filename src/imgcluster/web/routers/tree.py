"""A run's cluster tree, served once per run: the page cuts it at any level itself, with no request per step."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ... import api
from .deps import ExplorerDep, RunQuery

router = APIRouter(tags=["tree"])


@router.get("/tree", summary="A run's cluster tree: its clusters as leaves, merged up to the whole collection")
def cluster_tree(ex: ExplorerDep, run: RunQuery = None) -> dict[str, Any]:
    """Every node (id, parent, children, size, height, persistence, name, and ``k``: the finest cut it
    is a cluster of), the default and coarse cuts' sizes and why the default is what it is."""
    return api.cluster_tree(ex.record(run).key, workspace=ex.workspace)
