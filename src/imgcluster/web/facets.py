"""What the web app colours and filters a run's map by, per point, in the map's order: membership
probability, how the image was placed (fit, filed, held, proposed, duplicate, moved …), its folder,
its file date and, for a video's key-frame, its video. Stability is per cluster and comes with the
cluster list.

One binary body so that 1M points stay a few megabytes: a little-endian uint32 ``L``, ``L`` bytes of
JSON (``{"n", "how": [values], "folders": [folders], "videos": ["", videos], "date": {"min", "max"}
| null}``, padded with spaces to a multiple of 4), then ``n`` float32 membership probabilities, ``n``
float32 file dates (days since 1970, NaN where unknown), ``n`` int32 indexes into ``how``, ``n`` int32
indexes into ``folders`` and ``n`` int32 indexes into ``videos`` (0, "": not a key-frame).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..store import Workspace
from ..store.browse import file_facts

NS_PER_DAY = 86_400 * 10**9


def folder_of(path: str, root: str) -> str:
    """An image's folder as the user knows it: relative to the clustered folder ('.' for the folder
    itself), absolute when the image lies outside it."""
    folder = os.path.dirname(path)
    if root and (folder == root or folder.startswith(root.rstrip(os.sep) + os.sep)):
        return os.path.relpath(folder, root)
    return folder


def folders_of(paths: np.ndarray, root: str) -> tuple[list[str], np.ndarray]:
    """The distinct folders of ``paths`` (as ``folder_of`` names them, sorted) and each path's index
    into them. A run has few folders: each is named once (relpath per image took 6.7 s at 1M)."""
    codes: dict[str, int] = {}
    raw = np.fromiter((codes.setdefault(p[:p.rfind(os.sep) + 1], len(codes)) for p in paths.tolist()),
                      dtype=np.int64, count=len(paths))
    named = [folder_of(folder, root) if folder else "" for folder in codes]
    values, inverse = np.unique(np.asarray(named, dtype=object).astype(str), return_inverse=True)
    return values.tolist(), inverse.reshape(-1)[raw] if len(raw) else raw


def videos_of(paths: np.ndarray, frames: np.ndarray, root: str) -> tuple[list[str], np.ndarray]:
    """"" and the videos the key-frames among ``paths`` come from (relative to the clustered folder),
    and each path's index into them (0 for a still image)."""
    codes = np.zeros(len(paths), dtype=np.int64)
    videos: dict[str, int] = {"": 0}
    for row in np.flatnonzero(frames).tolist():
        name = os.path.normpath(os.path.join(folder_of(paths[row], root), os.path.basename(paths[row])))
        codes[row] = videos.setdefault(name, len(videos))
    return list(videos), codes


def facet_bytes(ws: Workspace, key: str, root: str, image_ids: np.ndarray, probability: np.ndarray,
                order: np.ndarray) -> bytes:
    """The facets of run ``key`` whose images are ``image_ids`` (ascending, as the store returns
    them), points in ``order`` (the map's Z-order); see the module docstring for the layout."""
    how = ws.assignments(key).how
    how = np.asarray(["fit"] * len(image_ids) if how is None else how, dtype=object)
    paths, mtimes, frames = file_facts(ws, image_ids)
    how_values, how_codes = np.unique(how.astype(str), return_inverse=True)
    folder_values, folder_codes = folders_of(paths, root)
    days = np.where(mtimes >= 0, mtimes / NS_PER_DAY, np.nan)
    known = days[~np.isnan(days)]
    video_values, video_codes = videos_of(paths, frames, root)
    header = {"n": len(image_ids), "how": how_values.tolist(), "folders": folder_values, "videos": video_values,
              "date": {"min": float(known.min()), "max": float(known.max())} if len(known) else None}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 4)
    return b"".join([np.uint32(len(text)).astype("<u4").tobytes(), text] + [
        np.ascontiguousarray(column[order]).astype(kind).tobytes() for column, kind in (
            (probability, "<f4"), (days, "<f4"), (how_codes.reshape(-1), "<i4"), (folder_codes, "<i4"),
            (video_codes, "<i4"))])
