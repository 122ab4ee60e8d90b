"""Runs: list, info, the 2-D map as binary arrays, and comparing two runs."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from ... import api
from ...store import RunRecord
from .deps import RUN_KEY, ExplorerDep

router = APIRouter(tags=["runs"])
Key = Annotated[str, Path(pattern=RUN_KEY, description="Run key (`imgcluster runs list`).")]
MOVED_SHOWN = 500  # a comparison lists at most this many moved images; ``n_moved`` counts them all


def parent_of(record: RunRecord) -> str | None:
    """The run an edit or an update was derived from, if any."""
    for source in ("edit", "update"):
        parent = record.info.get(source, {}).get("parent")
        if parent:
            return str(parent)
    return None


@router.get("/runs", summary="Every run of the workspace, newest first")
def list_runs(ex: ExplorerDep) -> list[dict[str, Any]]:
    with ex.db() as ws:
        records = {r.key: r for r in ws.runs()}
    summaries = api.list_runs(workspace=ex.workspace)
    return [dict(dataclasses.asdict(s), parent=parent_of(records[s.key]),
                 edit=records[s.key].info.get("edit")) for s in summaries if s.key in records]


@router.get("/runs/{key}", summary="Everything stored about a run (config, model, metrics, clusters, names)")
def run_info(ex: ExplorerDep, key: Key) -> dict[str, Any]:
    info = api.run_info(key, workspace=ex.workspace)
    info["parent"] = parent_of(ex.record(key))
    return info


@router.get("/runs/{key}/map", summary="The run's 2-D map as binary arrays",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "n x (float32), n y (float32), n cluster (int32), n image id (int32), "
                                            "little-endian, images in id order; n in the X-Points header."}})
def run_map(ex: ExplorerDep, key: Key) -> Response:
    view = ex.view(key)
    return Response(view.map_bytes(), media_type="application/octet-stream",
                    headers={"X-Points": str(len(view.image_ids)), "Cache-Control": "private, max-age=86400"})


@router.get("/runs/{key}/compare/{other}", summary="Compare two runs: ARI, NMI, matching, splits, merges")
def compare(ex: ExplorerDep, key: Key, other: Key) -> dict[str, Any]:
    result = api.compare_runs(key, other, workspace=ex.workspace).to_dict()
    result["n_moved"] = len(result["moved"])
    result["moved"] = result["moved"][:MOVED_SHOWN]
    return result
