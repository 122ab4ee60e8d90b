"""A run's facets: what the map can be coloured and filtered by, per point (see web/facets.py)."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Response

from ...store import Workspace
from ..facets import facet_bytes
from .deps import ExplorerDep
from .runs import Key

router = APIRouter(tags=["runs"])
_locks: dict[str, threading.Lock] = {}  # one per run: a run's facets never wait for another run's
_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


@router.get("/runs/{key}/facets", summary="Per point, in the map's order: membership probability, file date, "
                                          "how it was placed, folder, video",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "uint32 L, L bytes of JSON (n, how, folders, videos, date), then n "
                                            "float32 membership probability, n float32 file date (days since 1970, "
                                            "NaN unknown), n int32 index into how, n int32 index into folders, n "
                                            "int32 index into videos (0: not a key-frame)."}})
def run_facets(ex: ExplorerDep, key: Key) -> Response:
    view = ex.view(key)
    with _lock_for(view.record.key):  # two tabs opening one run build its facets once
        if view.facets is None:
            # Its own read connection: the shared one would hold every other request (a cluster's
            # grid, the map's thumbnails) for the 4-6 s the facets of 1M images take.
            with Workspace.open(ex.workspace, create=False) as ws:
                view.facets = facet_bytes(ws, view.record.key, view.record.root, view.image_ids,
                                          view.membership_probability, view.order)
    return Response(view.facets, media_type="application/octet-stream",
                    headers={"Cache-Control": "private, max-age=86400"})
