"""Runs: list, info, the 2-D map as binary arrays, and comparing two runs."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response

from ... import api
from ...label import choose_names
from ...store import RunRecord
from ...store.browse import images_by_id
from ...store.records import EDIT, REVIEW, UPDATE
from ..atlas import PER_ROW, PER_SHEET, TILE, compose_sheet
from ..state import cluster_label
from .deps import RUN_KEY, ExplorerDep

router = APIRouter(tags=["runs"])
Key = Annotated[str, Path(pattern=RUN_KEY, description="Run key (`imgcluster runs list`).")]
MOVED_SHOWN = 500  # a comparison lists at most this many moved images; ``n_moved`` counts them all


def parent_of(record: RunRecord) -> str | None:
    """The run an edit, an update or a review was derived from, if any (a follow keeps ids, nothing more)."""
    return record.parent if record.provenance.how in (EDIT, UPDATE, REVIEW) else None


@router.get("/runs", summary="Every run of the workspace, newest first")
def list_runs(ex: ExplorerDep) -> list[dict[str, Any]]:
    with ex.db() as ws:
        records = {r.key: r for r in ws.runs()}
    summaries = api.list_runs(workspace=ex.workspace)
    return [dict(dataclasses.asdict(s), parent=parent_of(records[s.key]),
                 edit=_edit_of(records[s.key])) for s in summaries if s.key in records]


def _edit_of(record: RunRecord) -> dict[str, Any] | None:
    """An edited run's edit: its parent, action and arguments."""
    if record.provenance.how != EDIT:
        return None
    return {"parent": record.parent, **record.provenance.details}


@router.get("/runs/{key}", summary="Everything stored about a run (config, model, metrics, clusters, names)")
def run_info(ex: ExplorerDep, key: Key) -> dict[str, Any]:
    info = api.run_info(key, workspace=ex.workspace)
    info["parent"] = parent_of(ex.record(key))
    return info


@router.get("/runs/{key}/map", summary="The run's 2-D map as binary arrays",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "n x (float32), n y (float32), n cluster (int32), n image id (int32), "
                                            "little-endian, points in Z-order of their position (see atlas); "
                                            "n in the X-Points header."}})
def run_map(ex: ExplorerDep, key: Key) -> Response:
    view = ex.view(key)
    return Response(view.map_bytes(), media_type="application/octet-stream",
                    headers={"X-Points": str(len(view.image_ids)), "Cache-Control": "private, max-age=86400"})


@router.get("/runs/{key}/atlas/{sheet}", summary="A sprite sheet of thumbnails for the zoomed-in map",
            response_class=Response,
            responses={200: {"content": {"image/jpeg": {}},
                             "description": f"Thumbnails of map points sheet*{PER_SHEET} to (sheet+1)*{PER_SHEET}-1 "
                                            f"(the map's order) as {PER_ROW}x{PER_ROW} tiles of {TILE} px."},
                       404: {}})
def atlas_sheet(ex: ExplorerDep, key: Key, sheet: Annotated[int, Path(ge=0, le=2**31)], request: Request) -> Response:
    view = ex.view(key)
    ids = view.sheet_ids(sheet)
    if not ids:
        raise HTTPException(404, f"Run {view.record.key} has {-(-len(view.image_ids) // PER_SHEET)} sprite sheets.")
    etag = f'"{view.record.key}-{sheet}"'  # a run never changes, nor do its thumbnails' contents
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    with ex.db() as ws:
        records = images_by_id(ws, ids)
        hashes = [records[i].content_hash if i in records else None for i in ids]
        blobs = ws.thumbnails(h for h in hashes if h)
    return Response(compose_sheet([blobs.get(h) if h else None for h in hashes]), media_type="image/jpeg",
                    headers=headers)


@router.get("/runs/{key}/compare/{other}", summary="Compare two runs: ARI, NMI, matching, splits, merges")
def compare(ex: ExplorerDep, key: Key, other: Key) -> dict[str, Any]:
    result = api.compare_runs(key, other, workspace=ex.workspace).to_dict()
    result["n_moved"] = len(result["moved"])
    result["moved"] = result["moved"][:MOVED_SHOWN]
    result["names_a"], result["names_b"] = (_names(ex, result[side], result[f"clusters_{side}"]) for side in "ab")
    return result


def _names(ex: ExplorerDep, key: str, clusters: list[int]) -> dict[str, str]:
    """``{cluster: name}`` of a run's clusters as the cluster list shows them (keys are JSON strings)."""
    with ex.db() as ws:
        names = choose_names(ws.names(key))
    return {str(c): cluster_label(c, names[c].name if c in names else None) for c in clusters}
