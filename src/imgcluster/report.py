"""A self-contained HTML report of a run: the 2-D map coloured by cluster with hover thumbnails,
a grid of representative thumbnails per cluster, the settings and model, and the skipped files.

Everything is inlined (data as JSON, thumbnails as data URIs, plain canvas JavaScript), so the file
opens offline and can be mailed around.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .palette import NOISE_COLOUR, cluster_colour, map_colours
from .store import Assignments, ClusterName, ClusterSummary, ImageRecord, Representatives, RunRecord

# Hover pictures beyond the representatives: every image up to this many (a 4,000-photo run shows a
# picture for every point), a spread sample of this many above it, so a 1M-image report stays a file
# a browser opens. They are re-encoded smaller than the grids' thumbnails (HOVER_SIDE px, ~1-2 KB
# each instead of ~5): 5,000 hover pictures add about 7 MB.
HOVER_SAMPLE = 5000
# Half the stored thumbnails' 128 px longest side: a JPEG decodes straight to half its size
# (Image.draft), with no resampling after. 72 px cost 0.38 ms a picture (full decode, then a bicubic
# resize), 1.5 s of a 3,927-photo report; 64 px 0.16 ms (2 cores).
HOVER_SIDE = 64
HOVER_QUALITY = 70
SHOWN_PER_KIND = 4   # central, probable and diverse images leading each cluster's grid
GRID = 16            # images per cluster grid, representatives included
# How the map caption names each 2-D map method (ReduceConfig.map_method).
MAP_CAPTIONS = {"umap": "a 2-D UMAP", "tsne": "a 2-D t-SNE", "pca": "a 2-D PCA projection"}


def thumbnail_ids(record: RunRecord, assignments: Assignments, hover_sample: int = HOVER_SAMPLE) -> list[int]:
    """Catalogue ids whose thumbnails the report embeds: every representative, then a spread sample."""
    wanted = [i for r in _representatives(record).values() for i, _ in r.ordered(SHOWN_PER_KIND)]
    wanted += [i for cluster in record.clusters for i in cluster.representatives]
    ids = np.asarray(assignments.image_ids)
    if len(ids) <= hover_sample:
        wanted.extend(ids.tolist())
    else:
        rng = np.random.default_rng(0)
        wanted.extend(rng.choice(ids, size=hover_sample, replace=False).tolist())
    return list(dict.fromkeys(int(i) for i in wanted))


def hover_thumbnail(jpeg: bytes, side: int = HOVER_SIDE) -> bytes:
    """A stored thumbnail re-encoded at most ``side`` pixels a side for the map's hover (a JPEG that
    cannot be read is kept as it is)."""
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            # JPEG decodes at a fraction of its size (fast); asked for the picture's own proportions,
            # as a square request keeps a 128 x 96 thumbnail at full size (96 / 2 < 64).
            width, height = image.size
            longest = max(width, height, 1)
            image.draft("RGB", (max(1, width * side // longest), max(1, height * side // longest)))
            small = image.convert("RGB")
            small.thumbnail((side, side))
            buffer = io.BytesIO()
            small.save(buffer, "JPEG", quality=HOVER_QUALITY)
            return buffer.getvalue()
    except (OSError, ValueError):
        return jpeg


def render(record: RunRecord, images: Sequence[ImageRecord], assignments: Assignments,
           thumbnails: Mapping[str, bytes], skipped: Sequence[ImageRecord],
           names: Mapping[int, ClusterName] | None = None, stability: Mapping[str, Any] | None = None) -> str:
    """The report as one HTML string. ``images`` is aligned with ``assignments``; ``names`` holds the
    name each cluster shows (unnamed clusters are absent); ``stability`` is the run's newest stability
    measurement as stored (its clusters below the threshold are flagged unstable)."""
    root = record.root
    hash_of = {r.id: r.content_hash for r in images}
    thumb_index: dict[tuple[str, bool], int] = {}
    thumb_list: list[str] = []

    def thumb_ref(image_id: int, small: bool = False) -> int:
        content_hash = hash_of.get(image_id)
        if content_hash is None or content_hash not in thumbnails:
            return -1
        if (content_hash, False) in thumb_index:  # a grid's full thumbnail serves the hover too
            return thumb_index[(content_hash, False)]
        if (content_hash, small) not in thumb_index:
            jpeg = hover_thumbnail(thumbnails[content_hash]) if small else thumbnails[content_hash]
            thumb_index[(content_hash, small)] = len(thumb_list)
            thumb_list.append("data:image/jpeg;base64," + base64.b64encode(jpeg).decode())
        return thumb_index[(content_hash, small)]

    position = {int(i): n for n, i in enumerate(np.asarray(assignments.image_ids).tolist())}
    names = names or {}
    chosen = _representatives(record)
    proposed = {p.cluster for p in record.proposed}  # by `imgcluster update`
    clusters = [dict({
        "cluster": c.cluster, "size": c.size, "name": c.name,
        "mean_probability": round(c.mean_membership_probability, 3),
        "proposed": c.cluster in proposed,
    }, **_grid(c, chosen.get(c.cluster), position), **_naming(names.get(c.cluster)),
        **_stability(c.cluster, stability))
        for c in record.clusters]
    for cluster in clusters:
        for member in cluster["members"]:
            thumb_ref(int(images[member].id))
    points = {
        "x": np.round(np.asarray(assignments.x, dtype=float), 4).tolist(),
        "y": np.round(np.asarray(assignments.y, dtype=float), 4).tolist(),
        "cluster": np.asarray(assignments.clusters).tolist(),
        "probability": np.round(np.asarray(assignments.membership_probability, dtype=float), 3).tolist(),
        "name": _shown_names(images, root),  # a path under the root, or "frame of VIDEO at mm:ss"
        "thumb": [thumb_ref(r.id, small=True) for r in images],
    }
    metrics = record.metrics
    # A video key-frame's caption opens its video at its time (a media fragment, file:// like the report).
    links = {str(n): f"{Path(r.source_path).as_uri()}#t={r.timestamp:.3f}" for n, r in enumerate(images)
             if r.source_path is not None and r.timestamp is not None}
    data = {
        "run": record.key, "root": root, "points": points, "clusters": clusters, "thumbs": thumb_list,
        "links": links,
        "colours": _colours(record, assignments),
        "noise_colour": NOISE_COLOUR,
    }
    created = _dt.datetime.fromtimestamp(record.created_at).strftime("%Y-%m-%d %H:%M")
    noise = metrics.get("noise_fraction", 0.0)
    silhouette = metrics.get("silhouette")
    summary = (f"{record.n_images:,} images · {record.n_clusters} clusters · {noise:.0%} unclustered"
               + (f" · silhouette {silhouette:.2f}" if silhouette is not None else ""))
    template = resources.files("imgcluster").joinpath("report_template.html").read_text(encoding="utf-8")
    replacements = {
        "{{TITLE}}": html.escape(f"imgcluster · {os.path.basename(root) or root} · run {record.key}"),
        "{{RUN}}": html.escape(record.key),
        "{{ROOT}}": html.escape(root),
        "{{CREATED}}": html.escape(created),
        "{{MODEL}}": html.escape(f"{record.model_name} ({record.model_id})"),
        "{{SUMMARY}}": html.escape(summary),
        "{{WARNINGS}}": _warnings(record.warnings),
        "{{MAP_METHOD}}": html.escape(MAP_CAPTIONS.get(str(record.config.get("reduce", {}).get("map_method")),
                                                       "a 2-D projection")),
        "{{SETTINGS}}": _settings_table(record, stability),
        "{{SKIPPED}}": _skipped_table(skipped, root),
        "{{N_SKIPPED}}": str(len(skipped)),
        "{{DATA}}": json.dumps(data, separators=(",", ":")).replace("</", "<\\/"),
    }
    for marker, value in replacements.items():
        template = template.replace(marker, value)
    return template


def _colours(record: RunRecord, assignments: Assignments) -> dict[str, str]:
    """Each cluster's colour, as the web app draws it: both read the run's stored colours (or, for a
    run saved before they were kept, call palette.map_colours on its map), so neighbouring clusters
    differ and a cluster looks the same in both."""
    chosen = record.colours
    if chosen is None:
        chosen = map_colours(np.asarray(assignments.x), np.asarray(assignments.y), np.asarray(assignments.clusters))
    return {str(c.cluster): chosen.get(c.cluster, cluster_colour(c.cluster)) for c in record.clusters}


def _warnings(warnings: Sequence[str]) -> str:
    """The run's warnings (a degenerate answer and what to try) as a list under the summary."""
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return f"<ul class='warnings' id='warnings'>{items}</ul>"


def _representatives(record: RunRecord) -> dict[int, Representatives]:
    return {r.cluster: r for r in record.representatives}


def _grid(cluster: ClusterSummary, chosen: Representatives | None, position: Mapping[int, int]
          ) -> dict[str, list[Any]]:
    """A cluster's grid: its representatives first, each with its kind, then its most probable members."""
    lead = chosen.ordered(SHOWN_PER_KIND) if chosen is not None else []
    kinds = {i: " · ".join(kind) for i, kind in lead}
    ids = list(dict.fromkeys([i for i, _ in lead] + list(cluster.representatives)))
    ids = [i for i in ids if i in position][:max(GRID, len(lead))]
    return {"members": [position[i] for i in ids], "kinds": [kinds.get(i, "") for i in ids]}


def _naming(name: ClusterName | None) -> dict[str, Any]:
    if name is None:
        return {"named": False}
    return {"named": True, "name": name.name, "source": name.source, "confidence": name.confidence, "level": name.level,
            "candidates": [[text, score] for text, score in name.candidates if text != name.name]}


def _stability(cluster: int, measured: Mapping[str, Any] | None) -> dict[str, Any]:
    found = next((c for c in (measured or {}).get("clusters", []) if c["cluster"] == cluster), None)
    if found is None:
        return {}
    return {"stability": round(found["stability"], 2), "unstable": bool(found["unstable"])}


def _shown_names(images: Sequence[ImageRecord], root: str) -> list[str]:
    """Each image as the report names it; files under the root (nearly all) by a plain slice."""
    prefix = root.rstrip(os.sep) + os.sep
    cut = len(prefix)
    return [r.path[cut:] if r.source_path is None and r.path.startswith(prefix)
            else r.describe(_relative(r.source_path or r.path, root)) for r in images]


def _relative(path: str, root: str) -> str:
    prefix = root.rstrip(os.sep) + os.sep
    if path.startswith(prefix):  # the usual case, and 20x faster than relpath on 100k paths
        return path[len(prefix):]
    try:
        relative = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def _settings_table(record: RunRecord, stability: Mapping[str, Any] | None = None) -> str:
    rows: list[tuple[str, Any]] = []
    model = record.model
    rows.append(("model", f"{model.get('name', record.model_name)} — {model.get('source', '')}"))
    backend = f", {model['backend']} {model.get('precision', '')}" if "backend" in model else ""
    rows.append(("embedding", f"{model.get('dim', '?')}-d, {model.get('pooling', '')}, device {model.get('device', '?')}"
                              f"{backend}"))
    for stage in ("reduce", "cluster", "scan"):
        values = record.config.get(stage, {})
        rows.append((stage, ", ".join(f"{k}={v}" for k, v in values.items() if v is not None)))
    auto = record.clustering.get("auto")
    if auto:
        rows.append(("auto mode", f"{auto['reason']} (scores of all {len(auto['table'])} candidates in run.json)"))
    if record.config.get("preset"):
        rows.append(("preset", record.config["preset"]))
    naming = record.naming
    if naming:
        failed = "; ".join(f"{namer} failed: {error}" for namer, error in naming.errors.items())
        rows.append(("names", f"namer {(naming.named_by if naming.errors else naming.namer) or 'none'}"
                              + (f" ({failed})" if failed else "")))
    if stability:
        unstable = stability.get("unstable_clusters", [])
        rows.append(("stability", f"{stability['repeats']} refits (seeds {', '.join(map(str, stability['seeds']))}"
                                  + (f", {stability['subsample']:.0%} subsamples" if stability.get("subsample") else "")
                                  + f"): {len(unstable)} of {len(stability['clusters'])} clusters below "
                                  f"{stability['threshold']}" + (f" ({', '.join(map(str, unstable))})" if unstable
                                                                  else "")
                                  + f"; consensus moves {stability['changed']:,} images (consensus.csv)"))
    timings = record.timings
    rows.append(("timings", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())))
    embedding = record.embedding
    if embedding:
        rows.append(("embedded now", f"{embedding.new:,} new, {embedding.cached:,} from cache"))
    versions = record.versions
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)


def _skipped_table(skipped: Sequence[ImageRecord], root: str) -> str:
    if not skipped:
        return "<p class='muted'>No file was skipped.</p>"
    rows = "\n".join(
        f"<tr><td>{html.escape(_relative(r.path, root))}</td><td>{html.escape(r.skip_stage or '')}</td>"
        f"<td>{html.escape(r.skip_reason or '')}</td></tr>" for r in skipped)
    return f"<table class='skipped'><tr><th>file</th><th>stage</th><th>reason</th></tr>{rows}</table>"
