"""The `imgcluster` command: parse options, call the API, render with rich. No logic lives here."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import api
from .config import ClusterConfig, EmbedConfig, ReduceConfig, RunConfig, ScanConfig, apply_preset
from .demo import write_digits
from .embed import MODELS, weights_available
from .errors import ImgclusterError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cluster a folder of images: embed, reduce, cluster, and look at the result.")
console = Console()
err = Console(stderr=True)


def _help(cls: type, name: str) -> str:
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show what each stage does.")] = False
           ) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, show_time=False)])


@app.command("cluster")
def cluster_command(
    path: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    model: Annotated[str, typer.Option(help=_help(EmbedConfig, "model"))] = "auto",
    method: Annotated[Optional[str], typer.Option(help=_help(ClusterConfig, "method"))] = None,
    k: Annotated[Optional[int], typer.Option("--k", help=_help(ClusterConfig, "k"))] = None,
    min_cluster_size: Annotated[Optional[int], typer.Option(help=_help(ClusterConfig, "min_cluster_size"))] = None,
    reduce: Annotated[Optional[str], typer.Option("--reduce", help=_help(ReduceConfig, "method"))] = None,
    map_method: Annotated[Optional[str], typer.Option("--map", help=_help(ReduceConfig, "map_method"))] = None,
    max_cluster_size: Annotated[Optional[int], typer.Option(help=_help(ClusterConfig, "max_cluster_size"))] = None,
    noise: Annotated[Optional[str], typer.Option(help=_help(ClusterConfig, "noise"))] = None,
    attach_threshold: Annotated[Optional[float], typer.Option(help=_help(ClusterConfig, "attach_threshold"))] = None,
    preset: Annotated[Optional[str], typer.Option(help="Named recipe: default, ifunny (the iFunny article's "
                                                       "UMAP+HDBSCAN settings) or gumgum (the GumGum article's "
                                                       "StandardScaler + k-means, k=100); other options override "
                                                       "it.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Where imgcluster keeps its files "
                                                           "(default: PATH/.imgcluster).")] = None,
    run_key: Annotated[Optional[str], typer.Option(help="Name for this run (default: date-time-random).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=_help(EmbedConfig, "batch_size"))] = None,
    device: Annotated[str, typer.Option(help=_help(EmbedConfig, "device"))] = "auto",
    seed: Annotated[Optional[int], typer.Option(help=_help(ReduceConfig, "seed") + " [default: 0]")] = None,
    min_side: Annotated[int, typer.Option(help=_help(ScanConfig, "min_side"))] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Scan, embed, reduce and cluster the images under PATH; write clusters.csv/.parquet and report.html."""
    # The preset first, then only the options the user gave: --preset ifunny --seed 3 keeps the seed.
    config = apply_preset(RunConfig(), preset)
    cluster_given = {name: value for name, value in
                     (("method", method), ("k", k), ("min_cluster_size", min_cluster_size), ("seed", seed),
                      ("noise", noise), ("attach_threshold", attach_threshold), ("max_cluster_size", max_cluster_size))
                     if value is not None}
    config = dataclasses.replace(
        config, scan=dataclasses.replace(config.scan, min_side=min_side),
        embed=dataclasses.replace(config.embed, model=model, batch_size=batch_size, device=device),
        reduce=dataclasses.replace(config.reduce, **{name: value for name, value in (
            ("seed", seed), ("method", reduce), ("map_method", map_method)) if value is not None}),
        cluster=dataclasses.replace(config.cluster, **cluster_given))
    with _progress(enabled=not as_json) as on_progress:
        run = api.cluster(path, workspace=workspace, config=config, run_key=run_key, progress=on_progress)
    if as_json:
        console.print_json(json.dumps(_run_json(run)))
        return
    _print_run(run)


@app.command("embed")
def embed_command(
    path: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    model: Annotated[str, typer.Option(help=_help(EmbedConfig, "model"))] = "auto",
    workspace: Annotated[Optional[Path], typer.Option(help="Where imgcluster keeps its files "
                                                           "(default: PATH/.imgcluster).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=_help(EmbedConfig, "batch_size"))] = None,
    device: Annotated[str, typer.Option(help=_help(EmbedConfig, "device"))] = "auto",
    workers: Annotated[int, typer.Option(help=_help(EmbedConfig, "workers"))] = 2,
    commit_every: Annotated[int, typer.Option(help=_help(EmbedConfig, "commit_every"))] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Scan and embed the images under PATH, without clustering; later `cluster` runs reuse the vectors."""
    config = EmbedConfig(model=model, batch_size=batch_size, device=device, workers=workers,
                         commit_every=commit_every)
    with _progress(enabled=not as_json) as on_progress:
        done = api.embed_folder(path, config=config, workspace=workspace, progress=on_progress)
    summary = {"root": done.root, "workspace": str(done.workspace), "model": done.model["name"],
               "model_id": done.model["model_id"], "images": done.n_images, "embedded_now": done.n_embedded,
               "cached": done.n_cached, "seconds": round(done.seconds, 2),
               "skipped": [{"path": r.path, "stage": r.skip_stage, "reason": r.skip_reason} for r in done.skipped]}
    if as_json:
        console.print_json(json.dumps(summary))
        return
    rate = f" ({done.n_embedded / done.seconds:,.1f} images/s)" if done.n_embedded and done.seconds else ""
    console.print(f"{done.n_images:,} images: {done.n_embedded:,} embedded now{rate}, {done.n_cached:,} already "
                  f"cached, with {done.model['name']} ({done.model['dim']}-d); {len(done.skipped)} skipped. "
                  f"Workspace: {done.workspace}", soft_wrap=True)


@app.command("report")
def report_command(
    path: Annotated[Optional[Path], typer.Argument(help="The image folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder (default: PATH/.imgcluster "
                                                           "or ./.imgcluster).")] = None,
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run).")] = None,
) -> None:
    """(Re)write the HTML report of a run and print its path."""
    console.print(str(api.report(run, path=path, workspace=workspace)), soft_wrap=True)


@app.command("predict")
def predict_command(
    images: Annotated[list[Path], typer.Argument(help="Image files to file into the run's clusters.")],
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run).")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder (default: FOLDER/.imgcluster "
                                                           "or ./.imgcluster).")] = None,
    device: Annotated[str, typer.Option(help=_help(EmbedConfig, "device"))] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """File new images into an existing run's clusters, without refitting."""
    filed = api.predict([str(i) for i in images], run=run, path=folder, workspace=workspace, device=device)
    if as_json:
        console.print_json(json.dumps([dataclasses.asdict(f) for f in filed], default=str))
        return
    table = Table("image", "cluster", "p", "nearest image", "similarity", "why")
    for f in filed:
        table.add_row(Path(f.path).name, f.status if f.cluster < 0 else str(f.cluster),
                      f"{f.membership_probability:.2f}", Path(f.nearest_path).name if f.nearest_path else "",
                      "" if f.nearest_similarity is None else f"{f.nearest_similarity:.2f}", f.reason)
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    labels: Annotated[Path, typer.Option(help="CSV with columns path,label (paths absolute or relative to "
                                              "the clustered folder).")],
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run).")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Score a run against known labels: NMI, ARI, homogeneity, completeness, purity (with and without noise)."""
    metrics = api.evaluate(labels, run, path=folder, workspace=workspace)
    if as_json:
        console.print_json(json.dumps(metrics))
        return
    table = Table("images", "n", "NMI", "ARI", "homogeneity", "completeness", "purity")
    for name, label in (("all", "all labelled (unclustered = one cluster)"), ("clustered", "clustered only")):
        row = metrics[name]
        table.add_row(label, str(row["n"]), *(f"{row.get(m, float('nan')):.3f}" for m in
                                               ("nmi", "ari", "homogeneity", "completeness", "purity")))
    console.print(table)
    console.print(f"{metrics['noise_fraction']:.0%} unclustered; {metrics['unlabelled_images']} images had no label.")


@app.command("demo")
def demo_command(
    dest: Annotated[Path, typer.Argument(help="Folder to write the demo images into.")] = Path("demo-data/digits"),
    limit: Annotated[Optional[int], typer.Option(help="Write only the first N images.")] = None,
) -> None:
    """Write scikit-learn's handwritten digits as PNGs (real images that ship offline) and print the folder."""
    console.print(str(write_digits(dest, limit=limit)), soft_wrap=True)


@app.command("models")
def models_command(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the registered models and whether their weights are on this machine."""
    rows = [{"name": s.name, "dim": s.dim, "source": s.source or "bundled (PyPI)",
             "available": weights_available(s.name), "description": s.description} for s in MODELS.values()]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("name", "dim", "weights here", "source", "description")
    for row in rows:
        table.add_row(row["name"], str(row["dim"]), "yes" if row["available"] else "no", row["source"],
                      row["description"])
    console.print(table)


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    """A context manager yielding a ``progress(stage, done, total)`` callback drawing rich bars."""
    import contextlib

    @contextlib.contextmanager
    def manager():  # type: ignore[no-untyped-def]
        if not enabled:
            yield None
            return
        bars = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"),
                        TimeRemainingColumn(), console=err, transient=False)
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total, rate="")
            task = bars.tasks[tasks[stage]]
            rate = f"{done / task.elapsed:,.0f}/s" if task.elapsed and stage in ("scan", "embed") and done else ""
            bars.update(tasks[stage], completed=done, total=total, rate=rate)

        with bars:
            yield on_progress

    return manager()


def _print_run(run: api.Run) -> None:
    record = run.record
    names = {r.id: Path(r.path).name for r in run.images}
    table = Table(title=f"run {record.key} · model {record.model_name} · {record.n_images:,} images",
                  title_justify="left")
    table.add_column("cluster", justify="right")
    table.add_column("size", justify="right")
    table.add_column("mean p", justify="right")
    table.add_column("examples")
    summaries = run.clusters()
    for summary in summaries[:25]:
        table.add_row("unclustered" if summary.cluster < 0 else str(summary.cluster), f"{summary.size:,}",
                      f"{summary.mean_membership_probability:.2f}",
                      ", ".join(names[i] for i in summary.representatives[:3]))
    if len(summaries) > 25:
        table.caption = f"… and {len(summaries) - 25} more clusters (see the report)"
    console.print(table)
    auto = record.info["clustering"].get("auto")
    if auto:
        chosen = record.config["cluster"]
        console.print(f"auto mode chose min_cluster_size={chosen['min_cluster_size']}, "
                      f"min_samples={chosen['min_samples']}, {chosen['cluster_selection_method']}: {auto['reason']}.")
    metrics = record.info["metrics"]
    console.print(f"{record.n_clusters} clusters, {metrics['noise_fraction']:.0%} unclustered; "
                  f"model [bold]{record.model_name}[/] ({record.info['model']['dim']}-d); "
                  f"embedded {record.info['embedding']['new']:,} new, {record.info['embedding']['cached']:,} cached.")
    if run.skipped:
        reasons = Counter(_reason_kind(r.skip_reason or "") for r in run.skipped)
        console.print(f"[yellow]Skipped {len(run.skipped)} file(s):[/] "
                      + "; ".join(f"{count} {reason}" for reason, count in reasons.most_common()))
        for record_ in run.skipped[:10]:
            console.print(f"  [dim]{record_.path}[/]: {record_.skip_reason}")
        if len(run.skipped) > 10:
            console.print(f"  … {len(run.skipped) - 10} more in the report")
    console.print(f"Table:  {run.outputs['csv']}", soft_wrap=True)
    console.print(f"Report: [bold green]{run.outputs['report']}[/]", soft_wrap=True)


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()


def _run_json(run: api.Run) -> dict[str, object]:
    record = run.record
    return {"run": record.key, "workspace": str(run.workspace), "model": record.model_name,
            "model_id": record.model_id, "n_images": record.n_images, "n_clusters": record.n_clusters,
            "metrics": record.info["metrics"], "clusters": record.info["clusters"],
            "skipped": [{"path": r.path, "stage": r.skip_stage, "reason": r.skip_reason} for r in run.skipped],
            "outputs": {name: str(p) for name, p in run.outputs.items()}}


def main() -> None:
    """Entry point: turn ImgclusterError into a one-line message and exit code 2."""
    try:
        app(standalone_mode=False)
    except ImgclusterError as error:
        err.print(f"[bold red]error:[/] {error}", soft_wrap=True)
        raise SystemExit(2) from None
    except (typer.Exit, typer.Abort) as stop:
        raise SystemExit(getattr(stop, "exit_code", 1)) from None
    except KeyboardInterrupt:
        err.print("interrupted; what was embedded so far is kept, run the same command to resume.")
        raise SystemExit(130) from None
    except Exception as click_error:
        import click

        if isinstance(click_error, click.ClickException):
            click_error.show()
            raise SystemExit(click_error.exit_code) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
