"""Similar-image search, text search and duplicates, on the workspace's stored embeddings.

    similar("photos/cat.jpg")                 # the catalogued images most like it (new files too)
    search_text("a red car", path="photos/")  # needs a model with a text tower (CLIP, SigLIP)
    duplicates("photos/")                     # exact, perceptual and embedding duplicate groups

The vector index lives in the workspace (``index/<model>/``): built on first use, brought up to
date with the images embedded since on every later use (added, not rebuilt), rebuilt only when the
collection has outgrown it (see ``search.VectorIndex.needs_rebuild``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DedupConfig, EmbedConfig, RunConfig, ScanConfig
from ..dedup import PERCEPTUAL_ALGORITHM, UNVERIFIABLE, DuplicateFinder, Link, perceptual_hashes
from ..embed import MODELS, check_device, check_name, embed_records, load_model, normalise, recorded_settings
from ..errors import ConfigError, ModelUnavailable, NoImages, WorkspaceBusy
from ..geometry import GeometricVerifier, Match, opencv_available
from ..label import choose_names
from ..scan import hash_file, load_rgb
from ..search import VectorIndex, exact_similarities
from ..store import ImageRecord, Workspace
from ..store.workspace import WORKSPACE_DIRNAME
from .steps import (
    Clustering,
    Progress,
    Reduction,
    StageProgress,
    fit_clusters,
    load_embedder,
    open_workspace,
    scanned_workspace,
    stage_progress,
)

log = logging.getLogger(__name__)

# Candidates fetched beyond k: hashes whose files are gone are dropped, and the exact re-score may
# reorder the approximate index's answers.
_EXTRA_CANDIDATES = 10
# The ``how`` of an image that ``cluster --dedup`` placed with its duplicate group's keeper.
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class SimilarImage:
    """One result: a catalogued file, its cosine similarity to the query (1 = the same picture for
    the model), and its cluster and cluster name in the default run, the newest with clusters (None when not
    in it)."""

    path: str
    similarity: float
    image_id: int
    content_hash: str
    cluster: int | None = None
    cluster_name: str | None = None


@dataclass(frozen=True)
class SearchResult:
    """The answer to ``similar`` or ``search_text``: the query, the model and index searched, the run
    whose clusters are shown, and the results, most similar first."""

    query: str
    model: str
    model_id: str
    index: dict[str, Any]
    run: str | None
    results: list[SimilarImage]
    query_embedded_now: bool = False  # a file not in the catalogue, embedded for this query


# -- the index ------------------------------------------------------------------------------------

def update_index(path: str | os.PathLike[str] | None = None, *, workspace: str | os.PathLike[str] | None = None,
                 model: str | None = None) -> dict[str, Any]:
    """Build or bring up to date the vector index of a model's embeddings (the newest run's model,
    else the one with most embeddings) and return its description (kind, rows, parameters)."""
    ws = _open(path, workspace)
    try:
        row = _choose_model(ws, model)
        return current_index(ws, row["model_id"]).describe()
    finally:
        ws.close()


def current_index(ws: Workspace, model_id: str) -> VectorIndex:
    """The model's index with every stored embedding in it; saved back when the workspace is free."""
    stored = ws.read_vector_index(model_id)
    index, added, rebuilt = None, [], False
    if stored is not None:
        blob, rows, added, params = stored
        try:
            index = VectorIndex.from_state(blob, rows, params)
            index.add(_vectors(ws, model_id, added), added)
        except (ValueError, KeyError, RuntimeError) as error:
            log.warning("The vector index of %s is unreadable (%s); building it again.", model_id, error)
            index = None
    if index is not None and ws.embedding_count(model_id) > len(index.keys_):
        new = sorted(ws.embedded_hashes(model_id) - set(index.keys_))
        index.add(_vectors(ws, model_id, new), new)
        added = added + new
        log.info("index of %s: %d images added", model_id, len(new))
        if index.needs_rebuild():
            index = None
    if index is None:
        hashes = sorted(ws.embedded_hashes(model_id))
        if not hashes:
            raise NoImages(f"The workspace {ws.path} has no embeddings from {model_id} yet. "
                           "Run `imgcluster embed PATH` first.")
        index = VectorIndex().fit(_vectors(ws, model_id, hashes), hashes)
        rebuilt = True
        log.info("index of %s built: %s", model_id, index.describe())
    if rebuilt or len(added) != (stored[3]["added"] if stored else 0):
        _save_index(ws, model_id, index, added, rebuilt)
    return index


def _save_index(ws: Workspace, model_id: str, index: VectorIndex, added: list[str], rebuilt: bool) -> None:
    try:
        ws.lock()
    except WorkspaceBusy:  # another process is embedding: answer now, save next time
        log.info("workspace busy; the updated index is used but not saved")
        return
    try:
        if rebuilt:
            ws.write_vector_index(model_id, *index.state())
        else:
            ws.add_to_vector_index(model_id, added)
    finally:
        ws.unlock()


def _vectors(ws: Workspace, model_id: str, hashes: Sequence[str]) -> np.ndarray:
    if not hashes:
        return np.zeros((0, _dim(ws, model_id)), dtype=np.float32)
    return ws.load_embeddings(model_id, list(hashes))


def _dim(ws: Workspace, model_id: str) -> int:
    return next(int(m["dim"]) for m in ws.models() if m["model_id"] == model_id)


# -- similar images and text ----------------------------------------------------------------------

def similar(image: str | os.PathLike[str], *, k: int = 20, path: str | os.PathLike[str] | None = None,
            workspace: str | os.PathLike[str] | None = None, model: str | None = None,
            device: str = "auto") -> SearchResult:
    """The ``k`` catalogued images most similar to ``image``: a file in the catalogue (its stored
    embedding is used) or any other image file (embedded now with the index's model).

    The workspace is ``workspace``, else ``path``'s, else the nearest ``.imgcluster`` above the image.
    ``model`` (a name or model id) chooses among the models with embeddings there; unset, the newest
    run's model, else the one with most embeddings."""
    image = Path(image).expanduser().resolve()
    if not image.is_file():
        raise NoImages(f"{image} is not a file. Give an image file (in the catalogue or not).")
    _check_k(k)
    check_device(device)
    ws = _open(path, workspace, near=image)
    try:
        row = _choose_model(ws, model)
        query, embedded_now = _image_vector(ws, row, image, device)
        index = current_index(ws, row["model_id"])
        results = _results(ws, row["model_id"], index, query, k, first=str(image))
        return _answer(ws, str(image), row, index, results, embedded_now)
    finally:
        ws.close()


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"k (how many images to show) must be at least 1; got {k}.")


def search_text(text: str, *, k: int = 20, path: str | os.PathLike[str] | None = None,
                workspace: str | os.PathLike[str] | None = None, model: str | None = None,
                device: str = "auto") -> SearchResult:
    """The ``k`` catalogued images that best match ``text``, through a model's text tower (CLIP,
    SigLIP). Unset, ``model`` is the newest run's model when it has a text tower, else the model with
    a text tower that embedded most images here; ConfigError says which models have one otherwise."""
    if not text.strip():
        raise ConfigError("Give some text to search for, e.g. \"a red car\".")
    _check_k(k)
    check_device(device)
    ws = _open(path, workspace, near=Path.cwd())
    try:
        row = _choose_model(ws, model, text=True)
        embedder = _load_for(row, device)
        if not getattr(embedder, "has_text_tower", False):
            raise ConfigError(_no_text_tower(row["name"]))
        query = embedder.embed_text([text])[0]
        index = current_index(ws, row["model_id"])
        return _answer(ws, text, row, index, _results(ws, row["model_id"], index, query, k), False)
    finally:
        ws.close()


def _answer(ws: Workspace, query: str, row: dict[str, Any], index: VectorIndex, results: list[SimilarImage],
            embedded_now: bool) -> SearchResult:
    if not ws.run_counts():
        return SearchResult(query, row["name"], row["model_id"], index.describe(), None, results, embedded_now)
    run = ws.run()  # the default run: the newest with clusters
    assignments = ws.assignments(run.key)
    cluster_of = dict(zip(assignments.image_ids.tolist(), assignments.clusters.tolist()))
    names = choose_names(ws.names(run.key))
    shown = []
    for result in results:
        cluster = cluster_of.get(result.image_id)
        name = names[cluster].name if cluster is not None and cluster in names else None
        shown.append(dataclasses.replace(result, cluster=cluster, cluster_name=name))
    return SearchResult(query, row["name"], row["model_id"], index.describe(), run.key, shown, embedded_now)


def _results(ws: Workspace, model_id: str, index: VectorIndex, query: np.ndarray, k: int,
             first: str | None = None) -> list[SimilarImage]:
    """Files of the nearest contents, exactly re-scored, the query file first among equals."""
    _check_k(k)
    _, keys = index.search(query[None, :], k + _EXTRA_CANDIDATES)
    hashes = keys[0]
    files = ws.images_by_hash(hashes)
    hashes = [h for h in hashes if h in files]
    scores = exact_similarities(query[None, :], _vectors(ws, model_id, hashes))[0] if hashes else []
    found = [SimilarImage(r.path, float(score), r.id, h) for h, score in zip(hashes, scores) for r in files[h]]
    found.sort(key=lambda s: (-round(s.similarity, 5), s.path != first, s.path))
    return found[:k]


def _image_vector(ws: Workspace, row: dict[str, Any], image: Path, device: str) -> tuple[np.ndarray, bool]:
    """The stored embedding of the file's content, or one made now (False / True)."""
    content_hash = hash_file(str(image))
    if content_hash in ws.embedded_hashes(row["model_id"]):
        return ws.load_embeddings(row["model_id"], [content_hash])[0], False
    embedder = _load_for(row, device)
    try:
        pixels = embedder.preprocess(load_rgb(str(image), min_side=embedder.input_size))
    except Exception as error:  # the scan's words for a file it cannot use
        raise NoImages(f"{image} cannot be read as an image ({error}).") from error
    return normalise(embedder.embed(pixels[None]))[0], True


def _load_for(row: dict[str, Any], device: str) -> Any:
    """The model that made ``row``'s embeddings, refusing one whose weights changed since."""
    loaded = load_model(row["name"], device=device, **recorded_settings(row["info"]))
    if loaded.model_id != row["model_id"]:
        raise ModelUnavailable(f"The embeddings here were made with {row['model_id']}, but {row['name']} now loads "
                               f"as {loaded.model_id}; its weights changed. Embed the folder again.")
    return loaded


def _choose_model(ws: Workspace, asked: str | None, text: bool = False) -> dict[str, Any]:
    models = [m for m in ws.models() if m["embeddings"]]
    if not models:
        raise NoImages(f"The workspace {ws.path} has no embeddings yet. Run `imgcluster embed PATH` "
                       "(or `imgcluster cluster PATH`) first.")
    if asked is not None:
        chosen = [m for m in models if asked in (m["name"], m["model_id"])]
        if not chosen:
            raise ConfigError(f"No embeddings from {asked!r} in {ws.path}. Models embedded here: "
                              f"{', '.join(m['name'] for m in models)}; or embed with it first "
                              f"(`imgcluster embed PATH --model {asked}`).")
        if text and not chosen[0]["info"].get("text_tower"):
            raise ConfigError(_no_text_tower(chosen[0]["name"]))
        return chosen[0]
    if text:
        models = [m for m in models if m["info"].get("text_tower")]
        if not models:
            raise ConfigError(_no_text_tower(", ".join(m["name"] for m in ws.models() if m["embeddings"])))
    runs = ws.runs()
    newest = next((m for m in models if runs and m["model_id"] == runs[0].model_id), None)
    return newest or models[0]


def _no_text_tower(names: str) -> str:
    with_text = ", ".join(s.name for s in MODELS.values() if s.text_tower)
    return (f"Text search needs a model with a text tower, and the embeddings here ({names}) have none. "
            f"Models with one: {with_text} (or any CLIP/SigLIP folder). Embed the images with one first, "
            "e.g. `imgcluster embed PATH --model clip-vit-b32`.")


def _open(path: str | os.PathLike[str] | None, workspace: str | os.PathLike[str] | None,
          near: Path | None = None) -> Workspace:
    """The workspace given, else ``path``'s, else the nearest existing ``.imgcluster`` above ``near``."""
    if workspace is not None or path is not None:
        ws = open_workspace(path, workspace=workspace, create=False)
    else:
        start = near if near is not None else Path.cwd()
        found = next((folder / WORKSPACE_DIRNAME for folder in [start, *start.parents]
                      if (folder / WORKSPACE_DIRNAME / "catalogue.db").is_file()), None)
        if found is None:
            raise NoImages(f"No imgcluster workspace in {start} or above it. Pass --folder (the embedded folder) "
                           "or --workspace, or run `imgcluster embed PATH` first.")
        ws = Workspace.open(found)
    return ws



# -- duplicates -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DuplicateImage:
    """A file in a duplicate group. ``how`` is its relation to the group's keeper: keeper, exact
    (same bytes), perceptual (its hash or its mirror's within ``hamming`` bits), crops (a crop-hash
    candidate verified geometrically), embedding (similarity at least the threshold) or chained
    (linked to the keeper only through another member); ``hamming`` (bits of 64, the nearer of the
    image and its mirror) and ``similarity`` (cosine) are measured against the keeper, None when not
    computed. ``linked_to`` is the path of the member its link joins it to (the keeper where they
    are linked directly), ``detector`` the detector of that link and, when it was verified,
    ``matches`` the agreeing key-points and ``transform`` the transform that maps this image onto
    the other (scale, rotation in degrees, shift in pixels, mirrored)."""

    path: str
    image_id: int
    how: str
    hamming: int | None
    similarity: float | None
    width: int | None
    height: int | None
    size: int
    linked_to: str | None = None
    detector: str | None = None
    matches: int | None = None
    transform: dict[str, Any] | None = None


@dataclass(frozen=True)
class DuplicatePair:
    """One link the detectors made: ``first`` and ``second`` (paths), the ``detector`` that found it
    and its evidence: ``hamming`` (bits between the hashes that matched: whole pictures, mirrors or
    crops), ``similarity`` (embedding cosine), and for a verified pair ``matches`` (agreeing
    key-points) and ``transform`` (how ``second`` maps onto ``first``); None where not measured."""

    group: int
    first: str
    second: str
    detector: str
    hamming: int | None
    similarity: float | None
    matches: int | None
    transform: dict[str, Any] | None


@dataclass(frozen=True)
class DuplicateGroup:
    """One group: the suggested keeper (most pixels, then first catalogued) and the others."""

    group: int
    keeper: DuplicateImage
    duplicates: list[DuplicateImage]


@dataclass(frozen=True)
class Duplicates:
    """What ``duplicates`` found under ``root``: groups (largest first), how many images were
    compared, the model whose embeddings were used (None without the embedding detector), the
    settings, and how many links each detector made. Nothing was deleted."""

    root: str
    workspace: Path
    n_images: int
    groups: list[DuplicateGroup]
    config: DedupConfig
    model: str | None = None
    links: dict[str, int] = field(default_factory=dict)
    pairs: list[DuplicatePair] = field(default_factory=list)
    candidates: dict[str, int] = field(default_factory=dict)
    verified: bool = False

    def rows(self) -> list[dict[str, Any]]:
        """One row per file in a group: group, keeper (bool), path, how, hamming, similarity, width,
        height, size in bytes, and the link that joined it (linked_to, detector, matches, transform)."""
        return [{"group": g.group, "keeper": image is g.keeper, **dataclasses.asdict(image)}
                for g in self.groups for image in [g.keeper, *g.duplicates]]

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON values: settings, counts, groups and every pair with its evidence."""
        return {"root": self.root, "n_images": self.n_images, "model": self.model, "links": self.links,
                "candidates": self.candidates, "verified": self.verified,
                "config": dataclasses.asdict(self.config), "groups": [dataclasses.asdict(g) for g in self.groups],
                "pairs": [dataclasses.asdict(p) for p in self.pairs]}

    def write(self, dest: str | os.PathLike[str]) -> Path:
        """Write the groups to ``dest``: CSV (one row per file) or JSON (groups, settings and every
        pair with its evidence), by suffix."""
        dest = check_duplicates_export(dest)
        if dest.suffix.lower() == ".json":
            text = json.dumps(self.to_dict(), indent=2)
        else:
            buffer = io.StringIO()
            columns = ["group", "keeper", *(f.name for f in dataclasses.fields(DuplicateImage))]
            writer = csv.DictWriter(buffer, fieldnames=columns)
            writer.writeheader()
            writer.writerows({**row, "transform": json.dumps(row["transform"]) if row["transform"] else None}
                             for row in self.rows())
            text = buffer.getvalue()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        return dest


def check_duplicates_export(dest: str | os.PathLike[str]) -> Path:
    """``dest`` resolved, or ConfigError when it cannot take the duplicate groups (checked before any work)."""
    dest = Path(dest).expanduser().resolve()
    if dest.suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"Export to a .csv or .json file; got {dest.name!r}.")
    if dest.is_dir():
        raise ConfigError(f"{dest} is a folder; give a .csv or .json file name to write the groups to.")
    return dest


def duplicates(path: str | os.PathLike[str], *, config: DedupConfig = DedupConfig(),
               embed_config: EmbedConfig = EmbedConfig(), scan_config: ScanConfig = ScanConfig(),
               workspace: str | os.PathLike[str] | None = None, progress: StageProgress | None = None) -> Duplicates:
    """Find duplicate groups among the images under ``path`` (scanning, hashing and embedding what is
    not in the workspace yet); see ``imgcluster.dedup`` for the three detectors and the keeper."""
    if "embedding" in config.detectors:
        check_name(embed_config.model)
        check_device(embed_config.device)
    stage = stage_progress(progress)
    with scanned_workspace(path, workspace, scan_config, stage) as (ws, found):
        images, vectors, model = list(found.images), None, None
        if "embedding" in config.detectors:
            embedder = load_embedder(embed_config)
            report = embed_records(images, embedder, ws, embed_config, stage("embed"))
            images = [r for r in images if r.content_hash not in report.unusable]
            vectors = ws.load_embeddings(embedder.model_id, [r.content_hash for r in images])  # type: ignore[misc]
            model = embedder.name
        finder = find_duplicates(ws, images, vectors, config, stage("hash"), stage("verify"))
        groups = _groups(images, finder)
        return Duplicates(found.root, ws.path, len(images), groups, config, model, dict(finder.links_),
                          _pairs(images, finder, groups), dict(finder.candidates_), finder.verified_)


def find_duplicates(ws: Workspace, images: Sequence[ImageRecord], vectors: np.ndarray | None, config: DedupConfig,
                    progress: Progress | None = None, verify_progress: Progress | None = None) -> DuplicateFinder:
    """Fit a DuplicateFinder over ``images`` (aligned with ``vectors``, or None without embeddings),
    computing the hash sets not stored yet, and verifying crops candidates with OpenCV when it is
    installed (``cluster --dedup`` shares this)."""
    hashed = "perceptual" in config.detectors or "crops" in config.detectors
    perceptual = _perceptual_hashes(ws, images, progress) if hashed else None
    pixels = np.asarray([(r.width or 0) * (r.height or 0) for r in images], dtype=np.float64)
    verify = None
    if "crops" in config.detectors or "embedding" in config.detectors:
        if opencv_available():
            verify = _verifier(images)
        else:
            log.warning("OpenCV is not installed: duplicate candidates are not verified geometrically, so crops "
                        "links nothing and embedding links look-alikes on similarity alone (mirrored copies are "
                        "still found). pip install 'imgcluster[dedup]' to find cropped copies.")
    finder = DuplicateFinder(config.detectors, config.hamming, config.similarity, config.crop_hamming).fit(
        [r.content_hash or f"#{r.id}" for r in images], perceptual, vectors, pixels,
        np.asarray([r.id for r in images]), verify, verify_progress)
    return finder


# Features of this many images are kept while checking candidates (~80 KB each at 1,000 ORB points).
_FEATURES_KEPT = 2048


def _verifier(images: Sequence[ImageRecord]) -> Callable[[int, int], Match | str | None]:
    """``verify(row, row)`` for DuplicateFinder: both images' ORB features (decoded once, the most
    recent kept) matched by a GeometricVerifier; UNVERIFIABLE when either image is too smooth to
    judge or cannot be decoded."""
    verifier = GeometricVerifier()
    kept: OrderedDict[int, Any] = OrderedDict()

    def features(row: int) -> Any:
        if row in kept:
            kept.move_to_end(row)
            return kept[row]
        try:
            found = verifier.features_of(load_rgb(images[row].path, min_side=verifier.side // 2))
        except Exception as error:  # a file changed or gone since the scan: this candidate is not a link
            log.info("Not verified: %s could not be read (%s).", images[row].path, error)
            found = None
        kept[row] = found
        if len(kept) > _FEATURES_KEPT:
            kept.popitem(last=False)
        return found

    def verify(a: int, b: int) -> Match | str | None:
        first, second = features(a), features(b)
        if first is None or second is None:
            return UNVERIFIABLE
        match = verifier.verify(first, second)
        if match is None and not (verifier.can_verify(first) and verifier.can_verify(second)):
            return UNVERIFIABLE  # few features: not matching them is no evidence of different pictures
        return match

    return verify


def _perceptual_hashes(ws: Workspace, images: Sequence[ImageRecord], progress: Progress | None) -> list[str | None]:
    hashes = [r.content_hash for r in images if r.content_hash]
    known = ws.perceptual_hashes(PERCEPTUAL_ALGORITHM, hashes)
    todo = {r.content_hash: r.path for r in images if r.content_hash and r.content_hash not in known}

    def compute(item: tuple[str, str]) -> tuple[str, str | None]:
        try:
            return item[0], perceptual_hashes(load_rgb(item[1], min_side=64))
        except Exception:  # undecodable files link by their bytes alone
            return item[0], None

    done, batch = 0, {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for content_hash, value in pool.map(compute, todo.items()):
            done += 1
            if value is not None:
                batch[content_hash] = known[content_hash] = value
            if len(batch) >= 512 or done == len(todo):
                ws.save_perceptual_hashes(PERCEPTUAL_ALGORITHM, batch)
                batch = {}
            if progress is not None:
                progress(done, len(todo))
    return [known.get(r.content_hash) if r.content_hash else None for r in images]


def _groups(images: Sequence[ImageRecord], finder: DuplicateFinder) -> list[DuplicateGroup]:
    def member(row: int) -> DuplicateImage:
        record = images[row]
        hamming = int(finder.hamming_[row])
        similarity = float(finder.similarity_[row])
        link = finder.pairs_[finder.link_[row]] if finder.link_[row] >= 0 else None
        other = None if link is None else images[link.second if link.first == row else link.first].path
        match = None if link is None else _match_seen_from(link, row)
        return DuplicateImage(record.path, record.id, str(finder.how_[row]), hamming if hamming >= 0 else None,
                              None if np.isnan(similarity) else round(similarity, 4), record.width, record.height,
                              record.size, other, None if link is None else link.detector,
                              None if match is None else match.matches, None if match is None else match.transform())

    groups: dict[int, list[int]] = {}
    for row in np.flatnonzero(finder.group_ >= 0):
        groups.setdefault(int(finder.group_[row]), []).append(int(row))
    result = []
    for rows in sorted(groups.values(), key=lambda rows: (-len(rows), min(images[r].id for r in rows))):
        keeper = next(r for r in rows if finder.keeper_[r])
        others = sorted((r for r in rows if r != keeper), key=lambda r: images[r].path)
        result.append(DuplicateGroup(len(result), member(keeper), [member(r) for r in others]))
    return result


def _match_seen_from(link: Link, row: int) -> Match | None:
    """The link's verification seen from ``row``: its transform maps ``row`` onto the other image
    (a link stores second onto first, so from ``first`` it is inverted)."""
    if link.match is None or row == link.second:
        return link.match
    return link.match.inverse()


def _pairs(images: Sequence[ImageRecord], finder: DuplicateFinder,
           groups: Sequence[DuplicateGroup]) -> list[DuplicatePair]:
    """Every link the finder made, with its group (as numbered in ``groups``), detector and evidence."""
    group_of = {image.image_id: g.group for g in groups for image in [g.keeper, *g.duplicates]}
    result = []
    for link in finder.pairs_:
        similarity = link.similarity
        result.append(DuplicatePair(group_of[images[link.first].id], images[link.first].path,
                                    images[link.second].path, link.detector,
                                    link.hamming if link.hamming >= 0 else None,
                                    None if np.isnan(similarity) else round(similarity, 4),
                                    None if link.match is None else link.match.matches,
                                    None if link.match is None else link.match.transform()))
    return result


def fit_deduplicated(ws: Workspace, images: Sequence[ImageRecord], vectors: np.ndarray, config: RunConfig,
                     timings: dict[str, float], progress: StageProgress | None = None) -> tuple[Reduction, Clustering]:
    """``fit_clusters`` on one image per duplicate group (``config.dedup``): the others get their
    keeper's cluster, probability and map position, with ``how`` = duplicate (``cluster --dedup``)."""
    assert config.dedup is not None
    started = time.perf_counter()
    stage = stage_progress(progress)
    finder = find_duplicates(ws, images, vectors, config.dedup, stage("hash"), stage("verify"))
    timings["dedup"] = time.perf_counter() - started
    keep = np.flatnonzero((finder.group_ < 0) | finder.keeper_)
    reduction, clustering = fit_clusters(vectors[keep], config.reduce, config.cluster, timings=timings,
                                         progress=progress)
    keeper_of = {int(finder.group_[row]): int(row) for row in np.flatnonzero(finder.keeper_)}
    duplicate = np.flatnonzero((finder.group_ >= 0) & ~finder.keeper_)
    source = np.arange(len(images))
    source[duplicate] = [keeper_of[int(finder.group_[row])] for row in duplicate]
    position = np.searchsorted(keep, source)  # each image's row in the fit: its own, or its keeper's
    how = (np.full(len(keep), "fit", dtype=object) if clustering.how is None
           else np.asarray(clustering.how, dtype=object))[position]
    how[duplicate] = DUPLICATE
    return (Reduction(reduction.space[position], reduction.map[position], reduction.space_reducer,
                      reduction.map_reducer),
            Clustering(clustering.labels[position], clustering.probabilities[position], clustering.clusterer,
                       dict(clustering.params, dedup=finder.describe()), how))
