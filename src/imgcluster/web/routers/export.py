"""Export from the browser: a run, a cluster, a selection or the filtered view, through the same code
as ``imgcluster export`` (api.export): into a folder the user names on the server's machine, or, for
a table, as a download."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from ... import api
from ...errors import ConfigError
from ..state import Explorer
from .clusters import ClusterNumber, ImageNumber
from .deps import RUN_KEY, ExplorerDep

router = APIRouter(tags=["export"])
# System folders an export never writes into, whatever the server's user may write.
SYSTEM = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr", "/var")


class Export(BaseModel):
    run: str | None = Field(None, pattern=RUN_KEY, description="The run to export; the newest with clusters when absent.")
    to: Literal["folders", "fiftyone", "csv", "parquet"] = Field(
        "folders", description="folders (one folder of links per cluster), fiftyone (a FiftyOne classification "
                               "dataset pointing at the images), csv or parquet (the per-image table with names).")
    dest: str | None = Field(None, max_length=4096, description="An absolute path on the server's machine: a new or "
                             "empty folder (a new file for csv and parquet), under your home folder, the temporary "
                             "folder or beside the clustered folder. Not needed for a download.")
    mode: Literal["link", "copy"] = Field("link", description="folders: symbolic links to the images, or copies.")
    cluster: ClusterNumber | None = Field(None, description="Only this cluster's images.")
    image_ids: list[ImageNumber] | None = Field(None, max_length=2_000_000,
                                                description="Only these images (a selection or a filtered view).")
    level: str | None = Field(None, max_length=32, description="The run's cluster tree cut at this level (default, "
                              "fine, coarse, a number of clusters or node:ID), as the page's coarse-fine control "
                              "shows it; absent: the run's own clusters.")


def export_ids(ex: Explorer, body: Export) -> list[int] | None:
    """The images to export: the listed ones, a cluster's (both: those of the list in the cluster), or all."""
    if body.cluster is None:
        return body.image_ids
    view = ex.view(body.run)
    members = view.image_ids[view.clusters == body.cluster]
    if not len(members):
        raise ConfigError(f"Run {view.record.key} has no cluster {body.cluster}.")
    if body.image_ids is not None:
        members = np.intersect1d(members, np.asarray(body.image_ids, dtype=np.int64))
    return members.tolist()


def allowed_places(ex: Explorer) -> list[Path]:
    """Where exports may go: the home folder, the temporary folder, and beside each clustered folder
    (never the file system's root as a whole)."""
    with ex.db() as ws:
        roots = {Path(r.root).resolve().parent for r in ws.runs() if r.root}
    places = [Path.home().resolve(), Path(tempfile.gettempdir()).resolve(), *sorted(roots)]
    return [p for p in dict.fromkeys(places) if p != Path(p.anchor)]


def check_dest(ex: Explorer, dest: str | None) -> Path:
    """``dest`` as an absolute path an export may write, or ConfigError saying why not and what would do."""
    if not dest or not dest.strip():
        raise ConfigError("Give the folder (or file) to export into, e.g. ~/exports/cats.")
    path = Path(dest.strip()).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{dest!r} is a relative path: it would land wherever the server was started. Give an "
                          "absolute one, e.g. ~/exports/cats or /tmp/cats.")
    path = path.resolve()
    if path == ex.workspace or ex.workspace in path.parents:
        raise ConfigError(f"{path} is inside the workspace ({ex.workspace}), which only imgcluster writes. Choose "
                          "another folder.")
    with ex.db() as ws:
        clustered = {Path(r.root).resolve() for r in ws.runs() if r.root}
    inside = next((root for root in sorted(clustered) if path == root or root in path.parents), None)
    if inside is not None:
        raise ConfigError(f"{path} is inside the clustered folder {inside}: the next scan or update would take the "
                          f"exported images for new ones. Choose a folder beside it, e.g. {inside.parent / 'exports'}.")
    places = allowed_places(ex)
    temp = Path(tempfile.gettempdir()).resolve()
    system = any(path == Path(s) or Path(s) in path.parents for s in SYSTEM) and temp not in path.parents
    if system or not any(path == p or p in path.parents for p in places):
        raise ConfigError(f"Exports go under your home folder, the temporary folder or beside the clustered folder "
                          f"({', '.join(map(str, places))}); {path} is not one of those. Choose a folder there.")
    return path


@router.get("/export/places", summary="Where exports may go: the folders under which a destination is accepted")
def export_places(ex: ExplorerDep) -> dict[str, Any]:
    return {"places": [str(p) for p in allowed_places(ex)]}


@router.post("/export", summary="Export a run, a cluster or chosen images into a folder on the server's machine")
def export(ex: ExplorerDep, body: Export) -> dict[str, Any]:
    record = ex.record(body.run)
    ids = export_ids(ex, body)
    dest = check_dest(ex, body.dest)
    done = api.export(dest, record.key, to=body.to, mode=body.mode, image_ids=ids, workspace=ex.workspace,
                       level=body.level)
    return {"run": record.key, "dest": str(done.dest), "format": done.format, "images": done.images,
            "linked": done.linked, "copied": done.copied, "missing": done.missing}


@router.post("/export/download", summary="A run, a cluster or chosen images as a CSV or Parquet download",
             response_class=Response, responses={200: {"content": {"text/csv": {}, "application/octet-stream": {}}}})
def download(ex: ExplorerDep, body: Export) -> Response:
    if body.to not in ("csv", "parquet"):
        raise ConfigError(f"Only csv and parquet download; {body.to} writes a folder: give a folder to export into.")
    record = ex.record(body.run)
    ids = export_ids(ex, body)
    name = f"{record.key}" + (f"-cluster-{body.cluster}" if body.cluster is not None else "") + f".{body.to}"
    with tempfile.TemporaryDirectory(prefix="imgcluster-export-") as folder:
        done = api.export(Path(folder) / name, record.key, to=body.to, image_ids=ids, workspace=ex.workspace,
                          level=body.level)
        data = Path(done.dest).read_bytes()
    media = "text/csv" if body.to == "csv" else "application/vnd.apache.parquet"
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

