"""A run's facets: what the map can be coloured and filtered by, per point (see web/facets.py)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from ...store import Workspace
from ..facets import facet_bytes
from ..state import Explorer, RunView
from .deps import ExplorerDep
from .runs import Key

router = APIRouter(tags=["runs"])
_builds_guard = threading.Lock()


def facets_build(ex: Explorer, view: RunView) -> Future[bytes]:
    """The build of a run's facets, started once however many requests want it (two tabs opening one
    run). It runs on a daemon thread of its own and the requests only await it: the 4-6 s that 1M
    images take then never hold the server's exit (uvicorn cancels the waiting requests after its
    graceful-shutdown timeout, and the interpreter does not wait for a daemon thread), nor another run's
    facets, nor a worker thread."""
    with _builds_guard:
        if view.facets_build is None:
            future: Future[bytes] = Future()
            future.set_running_or_notify_cancel()  # a request that gives up cannot cancel the others' build
            view.facets_build = future
            threading.Thread(target=_build, args=(ex, view, future), name=f"imgcluster-facets-{view.record.key}",
                             daemon=True).start()
        return view.facets_build


def _build(ex: Explorer, view: RunView, future: Future[bytes]) -> None:
    try:
        # Its own read connection: the shared one would hold every other request (a cluster's grid,
        # the map's thumbnails) for as long as the build takes.
        with Workspace.open(ex.workspace, create=False) as ws:
            view.facets = facet_bytes(ws, view.record.key, view.record.root, view.image_ids,
                                      view.membership_probability, view.order)
        future.set_result(view.facets)
    except BaseException as error:  # handed to the requests that wait for it, whatever it is
        with _builds_guard:
            view.facets_build = None  # the next request tries again
        future.set_exception(error)


@router.get("/runs/{key}/facets", summary="Per point, in the map's order: membership probability, file date, "
                                          "how it was placed, folder, video",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "uint32 L, L bytes of JSON (n, how, folders, videos, date), then n "
                                            "float32 membership probability, n float32 file date (days since 1970, "
                                            "NaN unknown), n int32 index into how, n int32 index into folders, n "
                                            "int32 index into videos (0: not a key-frame)."}})
async def run_facets(ex: ExplorerDep, key: Key) -> Response:
    view = await run_in_threadpool(ex.view, key)
    body = view.facets if view.facets is not None else await asyncio.wrap_future(facets_build(ex, view))
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": "private, max-age=86400"})
