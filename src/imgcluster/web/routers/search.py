"""Search: file an uploaded image into a run (its cluster and nearest images), and text search."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from ...api import explore
from ...label import choose_names
from ..state import Explorer, cluster_label
from .deps import ExplorerDep, RunQuery

router = APIRouter(tags=["search"])
MAX_UPLOAD = 64 * 1024 * 1024


def _named(ex: Explorer, key: str, found: list[explore.Neighbour]) -> list[dict[str, Any]]:
    with ex.db() as ws:
        names = choose_names(ws.names(key))
    return [{"id": n.image_id, "similarity": round(n.similarity, 4), "cluster": n.cluster,
             "cluster_name": cluster_label(n.cluster, names[n.cluster].name if n.cluster in names else None)}
            for n in found]


@router.post("/predict", summary="File an uploaded image into a run's clusters, with its nearest images")
def predict(ex: ExplorerDep, file: Annotated[UploadFile, File(description="An image file.")], run: RunQuery = None,
            k: Annotated[int, Query(ge=1, le=100)] = 12) -> dict[str, Any]:
    data = file.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, f"Uploads are limited to {MAX_UPLOAD // 2**20} MB.")
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
