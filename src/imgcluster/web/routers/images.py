"""Images, by catalogue id only: details in a run, thumbnail, the file itself, nearest neighbours.

No request names a path: an id that is not in the catalogue (or whose file is no longer an image
that was scanned) is a 404, so nothing outside the catalogued images can be read."""

from __future__ import annotations

import mimetypes
import os
import stat
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from ...api import explore
from ...label import choose_names
from ...scan import hash_bytes
from ...store import ImageRecord
from ...store.browse import images_by_id, thumbnail
from ..state import Explorer, cluster_label
from .deps import ExplorerDep, RunQuery

router = APIRouter(tags=["images"])
ImageId = Annotated[int, Path(ge=1, le=2**62, description="Catalogue id of the image.")]
CACHE = "private, max-age=3600"  # revalidated by ETag (the content hash) after an hour


def _record(ex: Explorer, image_id: int) -> ImageRecord:
    with ex.db() as ws:
        record = images_by_id(ws, [image_id]).get(image_id)
    if record is None:
        raise HTTPException(404, f"No image {image_id} in the catalogue.")
    return record


NAMES_AT_ONCE = 500  # a page of a grid is 60; the tooltip asks for one


@router.get("/images", summary="The file names of several images, by catalogue id (ids absent from the catalogue are left out)")
def image_names(ex: ExplorerDep, ids: Annotated[str, Query(pattern=r"^[0-9]{1,19}(,[0-9]{1,19})*$", max_length=10_000,
                                                          description="Comma-separated catalogue ids, at most 500.")]
                ) -> dict[str, Any]:
    wanted = list(dict.fromkeys(int(i) for i in ids.split(",")))
    if len(ids.split(",")) > NAMES_AT_ONCE:
        raise HTTPException(422, f"At most {NAMES_AT_ONCE} ids at once; got {len(ids.split(','))}. Ask in pages.")
    with ex.db() as ws:
        records = images_by_id(ws, [i for i in wanted if 1 <= i <= 2**62])
    return {"images": [{"id": i, "name": _file_name(records[i])} for i in wanted if i in records]}


def _file_name(record: ImageRecord) -> str:
    """How the app names an image: its file name (a key-frame: its video's, with the time)."""
    return record.describe(os.path.basename(record.source_path or record.path))


@router.get("/images/{image_id}", summary="An image and its place in a run: cluster, membership probability")
def image(ex: ExplorerDep, image_id: ImageId, run: RunQuery = None) -> dict[str, Any]:
    record = _record(ex, image_id)
    view = ex.view(run)
    row = view.row_of(image_id)
    result: dict[str, Any] = {
        "id": record.id, "name": _file_name(record),
        "path": record.path, "format": record.format,
        "width": record.width, "height": record.height, "size": record.size, "status": record.status,
        "run": view.record.key, "in_run": row is not None}
    if record.source_path is not None:  # a key-frame: its video, time (seconds) and shot
        result.update({"video": record.source_path, "timestamp": record.timestamp, "shot": record.shot})
    if row is not None:
        cluster = int(view.clusters[row])
        with ex.db() as ws:
            name = choose_names(ws.names(view.record.key)).get(cluster)
        result.update({"cluster": cluster, "cluster_name": cluster_label(cluster, name.name if name else None),
                       "membership_probability": round(float(view.membership_probability[row]), 4),
                       "how": ex.how(view, [image_id]).get(image_id), "x": float(view.x[row]), "y": float(view.y[row])})
    return result


def _etag_response(request: Request, etag: str, body: bytes, media_type: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": CACHE}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


@router.get("/images/{image_id}/thumbnail", summary="The image's JPEG thumbnail (ETag: its content hash)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, 304: {}, 404: {}})
def image_thumbnail(ex: ExplorerDep, image_id: ImageId, request: Request) -> Response:
    record = _record(ex, image_id)
    if record.content_hash is None:
        raise HTTPException(404, f"Image {image_id} has no thumbnail ({record.status}).")
    etag = f'"{record.content_hash}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE})
    with ex.db() as ws:
        jpeg = thumbnail(ws, record.content_hash)
    if jpeg is None:
        raise HTTPException(404, f"Image {image_id} has no thumbnail yet (it was never embedded).")
    return _etag_response(request, etag, jpeg, "image/jpeg")


@router.get("/images/{image_id}/file", summary="The image file itself (catalogued, scanned images only)",
            response_class=Response, responses={200: {"content": {"image/*": {}}}, 404: {}})
def image_file(ex: ExplorerDep, image_id: ImageId) -> Response:
    record = _record(ex, image_id)
    if record.status == "ok" and record.source_path is not None and record.content_hash is not None:
        with ex.db() as ws:  # a video's key-frame: its pixels are a JPEG in the workspace
            jpeg = ws.frame_jpeg(record.content_hash)
        if jpeg is not None:
            return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-cache"})
    if record.status != "ok":
        raise HTTPException(404, f"Image {image_id}'s file is not available ({record.status}).")
    with ex.db() as ws:
        roots = {r.root for r in ws.runs()}
    if _inside_a_root(record.path, roots) is None:
        raise HTTPException(404, f"Image {image_id}'s file now leads outside the folder that was scanned "
                                 "(a link changed since); it is not served.")
    data = _read_catalogued(record)
    if data is None:
        raise HTTPException(404, f"Image {image_id}'s file is no longer the image that was scanned (it was "
                                 "moved or changed, or a link now leads elsewhere); scan the folder again.")
    media = mimetypes.guess_type(record.path)[0] or (f"image/{record.format.lower()}" if record.format
                                                      else "application/octet-stream")
    return Response(data, media_type=media, headers={"Cache-Control": "private, no-cache"})


def _read_catalogued(record: ImageRecord) -> bytes | None:
    """The file's bytes when they are exactly the content the scan catalogued, else None.

    Checking the path and then opening it races with a link swapped in between (a symlink to
    /etc/passwd leaked that way), and a hard link passes any path check. So the caller's path check
    only keeps the server from opening what is plainly outside; the file is opened once without
    blocking (a FIFO must not hang the server) and what was read is checked: a regular file of the
    catalogued size whose bytes hash to the catalogued content hash. Whatever the path leads to by
    then, only the scanned image's bytes are ever sent (bench/fuzz_api.py: 697 of 1,500 answers held
    the secret with a link swapped in and out before, 0 now)."""
    if record.content_hash is None or record.size is None:
        return None
    try:
        descriptor = os.open(record.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size != record.size:
            return None
        data = handle.read(record.size + 1)
    return data if len(data) == record.size and hash_bytes(data) == record.content_hash else None


def _inside_a_root(path: str, roots: set[str]) -> str | None:
    """The real path of ``path`` when a scanned root holds it both by name and after resolving links
    (a link swapped in after the scan must not open /etc or another user's files), else None."""
    real = os.path.realpath(path)
    for root in roots:
        if _under(os.path.abspath(path), os.path.abspath(root)) and _under(real, os.path.realpath(root)):
            return real
    return None


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@router.get("/images/{image_id}/neighbours", summary="The image's nearest images in a run (cosine similarity)")
def image_neighbours(ex: ExplorerDep, image_id: ImageId, run: RunQuery = None, k: Annotated[int, Query(ge=1, le=200)] = 12) -> dict[str, Any]:
    record = _record(ex, image_id)
    predictor = ex.predictor(run)
    if record.content_hash is None:
        raise HTTPException(404, f"Image {image_id} has no embedding ({record.status}).")
    try:
        with ex.db() as ws:
            vector = ws.load_embeddings(predictor.record.model_id, [record.content_hash])[0]
    except KeyError:
        raise HTTPException(404, f"Image {image_id} has no {predictor.record.model_name} embedding.") from None
    found = explore.neighbours(predictor, vector, k, exclude=image_id)
    return {"run": predictor.record.key, "image": image_id,
            "neighbours": [{"id": n.image_id, "similarity": round(n.similarity, 4), "cluster": n.cluster}
                           for n in found]}
