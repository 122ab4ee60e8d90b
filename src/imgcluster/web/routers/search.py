"""Search: file an uploaded image into a run (its cluster and nearest images), and text search."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile

from ...api import explore
from ...label import choose_names
from ..state import Explorer, cluster_label
from .deps import ExplorerDep, RunQuery

router = APIRouter(tags=["search"])


def _named(ex: Explorer, key: str, found: list[explore.Neighbour]) -> list[dict[str, Any]]:
    with ex.db() as ws:
        names = choose_names(ws.names(key))
    return [{"id": n.image_id, "similarity": round(n.similarity, 4), "cluster": n.cluster,
             "cluster_name": cluster_label(n.cluster, names[n.cluster].name if n.cluster in names else None)}
            for n in found]


def _check_is_image(data: bytes, filename: str) -> None:
    """415 for an upload whose bytes are no image format Pillow knows (whatever its name says); a
    damaged image of a known format goes on and comes back skipped with the decoder's reason."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.open(io.BytesIO(data)).close()  # reads the header only
    except UnidentifiedImageError:
        head = data[:512]
        kind = ("empty" if not data else "HTML" if head.lstrip().lower().startswith((b"<!doctype html", b"<html"))
                else "a PDF" if head.startswith(b"%PDF") else "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head)
                else "binary data")
        raise HTTPException(415, f"{filename} is not an image: the content is {kind}. Upload a JPEG, PNG, WebP, "
                                 "GIF, BMP or TIFF file.") from None
    except Image.DecompressionBombError as error:
        raise HTTPException(413, f"{filename} declares a size so large it looks like a decompression bomb "
                                 f"({error}).") from None
    except Exception:  # noqa: BLE001 -- a damaged header of a known format: filing reports it as skipped
        return


@router.post("/predict", summary="File an uploaded image into a run's clusters, with its nearest images",
             responses={413: {"description": "Larger than the server's upload limit (serve --max-upload-mb)"},
                        415: {"description": "The upload's content is not an image"}})
def predict(ex: ExplorerDep, request: Request, file: Annotated[UploadFile, File(description="An image file.")],
            run: RunQuery = None,
            k: Annotated[int, Query(ge=1, le=100)] = 12) -> dict[str, Any]:
    limit = request.app.state.max_upload_bytes
    data = file.file.read(limit + 1)  # the app's BodyLimit refuses larger bodies before this
    if len(data) > limit:
        raise HTTPException(413, f"Uploads are limited to {limit / 2**20:g} MB.")
    _check_is_image(data, file.filename or "upload")
    predictor = ex.predictor(run)
    filed, found = ex.on_model_thread(explore.file_bytes, predictor, data, file.filename or "upload", k)
    result = {key: (None if isinstance(value, float) and math.isnan(value) else value)
              for key, value in dataclasses.asdict(filed).items()}
    result.pop("nearest_path")  # a path on the server; the neighbours carry ids
    with ex.db() as ws:
        names = choose_names(ws.names(predictor.record.key))
    name = names.get(filed.cluster)
    result["cluster_name"] = cluster_label(filed.cluster, name.name if name else None)
    return {"run": predictor.record.key, **result, "neighbours": _named(ex, predictor.record.key, found)}


@router.get("/search", summary="Text search: the run's images nearest a sentence (models with a text tower)")
def text_search(ex: ExplorerDep, q: Annotated[str, Query(min_length=1, max_length=500)], run: RunQuery = None,
                k: Annotated[int, Query(ge=1, le=200)] = 24) -> dict[str, Any]:
    predictor = ex.predictor(run)
    found = ex.on_model_thread(explore.text_search, predictor, q, k)
    return {"run": predictor.record.key, "query": q, "results": _named(ex, predictor.record.key, found)}
