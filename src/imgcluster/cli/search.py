"""`imgcluster similar`, `imgcluster search` and `imgcluster duplicates`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .. import api
from ..api.search import check_duplicates_export
from ..config import DETECTORS, DedupConfig, EmbedConfig
from .common import app, console, option_default, option_help, progress_bar

FolderOption = Annotated[Optional[Path], typer.Option("--folder", help="The embedded folder whose workspace to use "
                                                                       "(default: the nearest .imgcluster above).")]
WorkspaceOption = Annotated[Optional[Path], typer.Option(help="Workspace folder.")]
ModelOption = Annotated[Optional[str], typer.Option(help="Whose embeddings to search (a name or model id); default: "
                                                         "the newest run's model, else the one with most images.")]
KOption = Annotated[int, typer.Option("-k", "--k", help="How many images to show.", min=1)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


@app.command("similar")
def similar_command(
    image: Annotated[Path, typer.Argument(help="An image file: one in the catalogue, or any other (embedded now).")],
    k: KOption = 20,
    folder: FolderOption = None,
    workspace: WorkspaceOption = None,
    model: ModelOption = None,
    device: Annotated[str, typer.Option(help=option_help(EmbedConfig, "device"))] = option_default(EmbedConfig, "device"),
    as_json: JsonOption = False,
) -> None:
    """The catalogued images most similar to IMAGE, with cosine similarities and their clusters."""
    _print_result(api.similar(image, k=k, path=folder, workspace=workspace, model=model, device=device), as_json)


@app.command("search")
def search_command(
    text: Annotated[str, typer.Argument(help='What to look for, e.g. "a red car".')],
    k: KOption = 20,
    folder: FolderOption = None,
    workspace: WorkspaceOption = None,
    model: ModelOption = None,
    device: Annotated[str, typer.Option(help=option_help(EmbedConfig, "device"))] = option_default(EmbedConfig, "device"),
    as_json: JsonOption = False,
) -> None:
    """The catalogued images that best match TEXT (models with a text tower: CLIP, SigLIP)."""
    _print_result(api.search_text(text, k=k, path=folder, workspace=workspace, model=model, device=device), as_json)


def _print_result(result: api.SearchResult, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(result)))
        return
    index = result.index
    table = Table("#", "similarity", "cluster", title=f"{escape(result.query)} · model {result.model} · "
                  f"{index['kind']} index of {index['rows']:,} images", title_justify="left")
    table.add_column("image", overflow="fold")
    for rank, found in enumerate(result.results, 1):
        cluster = "" if found.cluster is None else ("unclustered" if found.cluster < 0 else str(found.cluster))
        if found.cluster_name:
            cluster += f" {escape(found.cluster_name)}"
        table.add_row(str(rank), f"{found.similarity:.3f}", cluster, escape(found.path))
    console.print(table)
    if result.query_embedded_now:
        console.print("[dim]The query image is not in the catalogue; it was embedded for this search.[/]")


@app.command("duplicates")
def duplicates_command(
    path: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    detectors: Annotated[str, typer.Option(help=option_help(DedupConfig, "detectors") + " Comma-separated.")]
    = ",".join(DETECTORS),
    hamming: Annotated[int, typer.Option(help=option_help(DedupConfig, "hamming"))] = DedupConfig().hamming,
    crop_hamming: Annotated[int, typer.Option(help=option_help(DedupConfig, "crop_hamming"))] = DedupConfig().crop_hamming,
    similarity: Annotated[float, typer.Option(help=option_help(DedupConfig, "similarity"))] = DedupConfig().similarity,
    model: Annotated[str, typer.Option(help=option_help(EmbedConfig, "model"))] = option_default(EmbedConfig, "model"),
    device: Annotated[str, typer.Option(help=option_help(EmbedConfig, "device"))] = option_default(EmbedConfig, "device"),
    workspace: Annotated[Optional[Path], typer.Option(help="Where imgcluster keeps its files "
                                                           "(default: PATH/.imgcluster).")] = None,
    export: Annotated[Optional[Path], typer.Option("--export", help="Also write the groups to this .csv (one row "
                                                                    "per file) or .json file.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Groups of duplicate images under PATH, each with a suggested keeper. Nothing is deleted."""
    config = DedupConfig(detectors=tuple(d.strip() for d in detectors.split(",") if d.strip()), hamming=hamming,
                         crop_hamming=crop_hamming, similarity=similarity)
    if export is not None:
        check_duplicates_export(export)  # a wrong suffix fails now, not after hashing every image
    with progress_bar(enabled=not as_json) as on_progress:
        found = api.duplicates(path, config=config, embed_config=EmbedConfig(model=model, device=device),
                               workspace=workspace, progress=on_progress)
    written = found.write(export) if export is not None else None
    if as_json:
        console.print_json(json.dumps({**found.to_dict(), "export": str(written) if written else None}))
        return
    table = Table("group", "keep", "how", "bits", "similarity", "matches", "size",
                  title=f"{len(found.groups)} duplicate groups among {found.n_images:,} images", title_justify="left")
    table.add_column("image", overflow="fold")
    for group in found.groups[:50]:
        for image in [group.keeper, *group.duplicates]:
            keeper = image is group.keeper
            table.add_row(str(group.group) if keeper else "", "keep" if keeper else "", "" if keeper else image.how,
                          "" if image.hamming is None or keeper else str(image.hamming),
                          "" if image.similarity is None or keeper else f"{image.similarity:.3f}",
                          "" if image.matches is None or keeper else str(image.matches),
                          f"{image.width}×{image.height}", escape(image.path))
    if len(found.groups) > 50:
        table.caption = f"… and {len(found.groups) - 50} more groups (--export writes them all)"
    console.print(table)
    n_duplicates = sum(len(g.duplicates) for g in found.groups)
    console.print(f"{n_duplicates:,} duplicates in {len(found.groups):,} groups; nothing was deleted. Perceptual "
                  f"hashes (or their mirrors) within {config.hamming} bits, "
                  f"embeddings ({escape(found.model or 'not used')}) "
                  f"at cosine ≥ {config.similarity}; change them with --hamming and --similarity.", soft_wrap=True)
    if "crops" in config.detectors:
        checked = found.candidates.get("verified", 0)
        console.print(f"Crops: {found.candidates.get('crops', 0):,} candidate pair(s) within {config.crop_hamming} "
                      f"bits, {checked:,} checked with local features, {found.links.get('crops', 0):,} linked"
                      + ("." if found.verified else escape("; not verified: OpenCV is missing (pip install "
                                                           "'imgcluster[dedup]').")), soft_wrap=True)
    if written:
        console.print(f"Written: {escape(str(written))}", soft_wrap=True)
