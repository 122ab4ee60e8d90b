"""`imgcluster runs list|show|rm|compare` and `imgcluster stability`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .. import api
from ..errors import RunNotFound
from .common import (LEVEL_HELP, FolderAlias, app, chosen_run, console, folder_or_path, id_and_name, print_report_path,
                     progress_bar, trust)

runs_app = typer.Typer(no_args_is_help=True, help="List, show, compare and delete the runs of a workspace.")
app.add_typer(runs_app, name="runs")

FolderOption = Annotated[Optional[Path], typer.Option("--folder", help="The clustered folder whose workspace to use.")]
WorkspaceOption = Annotated[Optional[Path], typer.Option(help="Workspace folder (default: the image folder's "
                                                               ".imgcluster, or ./.imgcluster).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


@runs_app.command("list")
def runs_list_command(
    path: Annotated[Optional[Path], typer.Argument(help="The image folder whose workspace to use.")] = None,
    workspace: WorkspaceOption = None,
    folder: FolderAlias = None,
    as_json: JsonOption = False,
) -> None:
    """List the runs, newest first: date, model, method, clusters, unclustered share, silhouette, stability."""
    runs = api.list_runs(folder_or_path(path, folder), workspace=workspace)
    if as_json:
        console.print_json(json.dumps([dataclasses.asdict(r) for r in runs]))
        return
    if not runs:
        console.print("No runs yet: `imgcluster cluster PATH` makes one.")
        return
    table = _runs_table(runs)
    if console.measure(table, options=console.options.update(width=10_000)).maximum > console.width:
        _print_runs_stacked(runs)  # a narrow terminal would cut every column to a letter
    else:
        console.print(table)


_UNSTABLE_NOTE = "unstable: clusters below 0.6 in the newest `imgcluster stability` (-: not measured)"


def _runs_table(runs: list[api.RunSummary]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, caption=_UNSTABLE_NOTE, caption_justify="left")
    for column in ("key", "date"):  # kept whole: what you copy into the next command
        table.add_column(column, no_wrap=True)
    for column in ("model", "method"):
        table.add_column(column)
    for column in ("images", "k", "unclustered", "silhouette"):
        table.add_column(column, justify="right")
    table.add_column("unstable")
    for r in runs:
        table.add_row(r.key, _date(r.created_at), escape(r.model_name), r.method, f"{r.n_images:,}", str(r.n_clusters),
                      f"{r.noise_fraction:.0%}", "" if r.silhouette is None else f"{r.silhouette:.2f}",
                      "-" if r.unstable_clusters is None else ", ".join(map(str, r.unstable_clusters)) or "none")
    return table


def _print_runs_stacked(runs: list[api.RunSummary]) -> None:
    """The runs list for narrow terminals: each run's key, date, model and method on one line, its
    figures on the next."""
    for r in runs:
        silhouette = "-" if r.silhouette is None else f"{r.silhouette:.2f}"
        unstable = "-" if r.unstable_clusters is None else ", ".join(map(str, r.unstable_clusters)) or "none"
        console.print(f"[bold]{r.key}[/]  {_date(r.created_at)}  {escape(r.model_name)}  {escape(r.method)}",
                      soft_wrap=True)
        console.print(f"    {r.n_images:,} image{'s' if r.n_images != 1 else ''} · {r.n_clusters} clusters · "
                      f"{r.noise_fraction:.0%} unclustered · silhouette {silhouette} · unstable {unstable}")
    console.print(f"[dim]{_UNSTABLE_NOTE}[/]")


@runs_app.command("show")
def runs_show_command(
    key: Annotated[Optional[str], typer.Argument(help="Run key (default: the newest run with clusters).")] = None,
    folder: FolderOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Everything stored about a run: config and automatic choices, model, versions, timings, metrics, clusters."""
    key = chosen_run(key, folder, workspace)
    info = api.run_info(key, path=folder, workspace=workspace)
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    model = info.get("model", {})
    console.print(f"[bold]run {info['key']}[/] · {_date(info['created_at'])} · {info['n_images']:,} images · "
                  f"{info['n_clusters']} clusters\nfolder {escape(str(info['root']))}\n"
                  f"workspace {escape(str(info['workspace']))}\n"
                  f"model [bold]{escape(info['model_name'])}[/] ({escape(str(info['model_id']))}), "
                  f"{model.get('dim', '?')}-d, "
                  f"pooling {model.get('pooling', '?')}, device {model.get('device', '?')}"
                  + (f", backend {model['backend']} ({model.get('precision')})" if "backend" in model else ""), soft_wrap=True)
    for line in _lineage(info):
        console.print(line, soft_wrap=True)
    for warning in info.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    console.print(_settings_table(info))
    auto = info.get("clustering", {}).get("auto")
    if auto:
        console.print(f"auto mode: {auto['reason']} ({len(auto['table'])} candidates scored; --json has the table)")
    metrics = info.get("metrics", {})
    silhouette = metrics.get("silhouette")
    console.print(f"metrics: {metrics.get('n_clusters', info['n_clusters'])} clusters, "
                  f"{metrics.get('noise_fraction', 0):.0%} unclustered, mean membership probability "
                  f"{metrics.get('mean_membership_probability', 0):.2f}, silhouette "
                  f"{'n/a' if silhouette is None else f'{silhouette:.3f}'}")
    console.print("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in info.get("timings", {}).items()),
                  soft_wrap=True)
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items()), soft_wrap=True)
    console.print(_clusters_table(info))
    for evaluation in info["evaluations"]:
        scores = evaluation["metrics"]["all"]
        level = f" at level {evaluation['metrics']['level']}" if evaluation["metrics"].get("level") else ""
        console.print(f"evaluation {_date(evaluation['created_at'])} against "
                      f"{escape(str(evaluation['labels_source']))}{level}: "
                      f"NMI {scores.get('nmi', float('nan')):.3f}, ARI {scores.get('ari', float('nan')):.3f}",
                      soft_wrap=True)
    if info["stability"]:
        newest = info["stability"][-1]
        console.print(f"stability {_date(newest['created_at'])}: {newest['repeats']} refits, unstable clusters "
                      f"(below {newest['threshold']}): {', '.join(map(str, newest['unstable_clusters'])) or 'none'}")
    for path in info["files"]:
        console.print(f"  [dim]{escape(str(path))}[/]", soft_wrap=True)


def _lineage(info: dict[str, Any]) -> list[str]:
    """Where a run comes from: the run it was derived from (update, proposals, edit), the run whose
    ids it keeps (cluster --follow)."""
    lines = []
    update = info.get("update")
    if update:
        reviewed = update.get("reviewed")
        how = (f"`imgcluster proposals` (accepted {reviewed.get('accepted', [])}, rejected "
               f"{reviewed.get('rejected', [])})" if reviewed else
               f"`imgcluster update` ({update.get('new_images', 0):,} new images, "
               f"{update.get('removed_images', 0):,} removed)")
        lines.append(f"derived from run [bold]{update['parent']}[/] by {how}")
    edit = info.get("edit")
    if edit:
        what = (f"merged clusters {', '.join(map(str, edit.get('clusters', [])))} into {edit.get('into')}"
                if edit.get("action") == "merge" else
                f"moved {len(edit.get('image_ids', [])):,} images to cluster {edit.get('cluster')}"
                if edit.get("action") == "move" else str(edit.get("action", "edited")))
        lines.append(f"derived from run [bold]{edit['parent']}[/] by an edit: {what}")
    follows = info.get("clustering", {}).get("follows")
    if follows:
        lines.append(f"follows run [bold]{follows['run']}[/]: {len(follows.get('matched', []))} clusters keep its ids, "
                     f"{len(follows.get('new_clusters', []))} are new")
    return lines


def _settings_table(info: dict[str, Any]) -> Table:
    """The resolved config per stage; values imgcluster chose itself are marked (auto)."""
    requested = info.get("requested_config", {})
    table = Table("stage", "settings", show_header=False)
    for stage, values in info["config"].items():
        if not isinstance(values, dict):
            if values is not None:
                table.add_row(stage, escape(str(values)))
            continue
        asked = requested.get(stage, {})
        table.add_row(stage, ", ".join(
            escape(f"{k}={v}") + (" [cyan](auto)[/]" if asked.get(k, v) is None else "")
            for k, v in values.items() if v is not None))
    return table


def _clusters_table(info: dict[str, Any]) -> Table:
    stability = {c["cluster"]: c for c in (info["stability"][-1]["clusters"] if info["stability"] else [])}
    table = Table("cluster", "name", "size", "mean p", "stability")
    for c in info.get("clusters", []):
        name = info["names"].get(str(c["cluster"]))
        measured = stability.get(c["cluster"])
        table.add_row("unclustered" if c["cluster"] < 0 else str(c["cluster"]),
                      f"{escape(name['name'])} {trust(name)}" if name else "", f"{c['size']:,}",
                      f"{c['mean_membership_probability']:.2f}",
                      "" if measured is None else f"{measured['stability']:.2f}"
                      + (" [bold red]unstable[/]" if measured["unstable"] else ""))
    return table


@runs_app.command("rm")
def runs_rm_command(
    key: Annotated[str, typer.Argument(help="The run to delete (`imgcluster runs list` shows the keys).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    folder: FolderOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Delete a run: its assignments, names, evaluations, stability and its folder. Embeddings stay."""
    try:
        info = api.run_info(key, path=folder, workspace=workspace)
    except RunNotFound:
        # What a command killed while saving leaves: a folder of files and no run. Nothing to confirm.
        if api.discard_unsaved_run(key, path=folder, workspace=workspace):
            console.print(f"Removed the half-written folder of run {key} (an interrupted command left it; it "
                          "was never a saved run).")
            return
        raise
    if not yes:
        typer.confirm(f"Delete run {key} ({info['n_images']:,} images, {info['n_clusters']} clusters, "
                      f"{_date(info['created_at'])}) and {Path(info['workspace']) / 'runs' / key}?", abort=True)
    api.delete_run(key, path=folder, workspace=workspace)
    console.print(f"Deleted run {key}.")


@runs_app.command("compare")
def runs_compare_command(
    a: Annotated[str, typer.Argument(help="Run A's key.")],
    b: Annotated[str, typer.Argument(help="Run B's key.")],
    folder: FolderOption = None,
    workspace: WorkspaceOption = None,
    moved: Annotated[int, typer.Option(help="How many moved images to list (--json lists all).", min=0)] = 10,
    level: Annotated[Optional[str], typer.Option("--level", help=LEVEL_HELP + " Both runs are cut at it.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare two runs: ARI, NMI, variation of information, cluster matching, splits, merges, moved images."""
    result = api.compare_runs(a, b, path=folder, workspace=workspace, level=level)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    console.print(f"[bold]{result.a}[/] (A) vs [bold]{result.b}[/] (B) over {result.n_common:,} common images"
                  + (f" ({result.only_a:,} only in A, {result.only_b:,} only in B)" if result.only_a or result.only_b
                     else "") + f": ARI {result.ari:.3f} · NMI {result.nmi:.3f} · variation of information "
                  f"{result.variation_of_information:.3f} nats", soft_wrap=True)
    names_a, names_b = (_shown_names(key, folder, workspace, level) for key in (result.a, result.b))
    matching = Table("A", "B", title="best one-to-one matching", title_justify="left")
    for column in ("overlap", "Jaccard"):
        matching.add_column(column, justify="right")
    for m in result.matching:
        matching.add_row(id_and_name(m.a, names_a.get(m.a)), id_and_name(m.b, names_b.get(m.b)), f"{m.overlap:,}",
                         f"{m.jaccard:.2f}")
    console.print(matching)
    for split in result.splits:
        console.print(f"split: A {id_and_name(split.cluster, names_a.get(split.cluster))} → "
                      + ", ".join(f"B {id_and_name(c, names_b.get(c))} ({n:,})" for c, n in split.parts))
    for merge in result.merges:
        console.print("merge: " + " + ".join(f"A {id_and_name(c, names_a.get(c))} ({n:,})" for c, n in merge.parts)
                      + f" → B {id_and_name(merge.cluster, names_b.get(merge.cluster))}")
    if len(result.clusters_a) <= 16 and len(result.clusters_b) <= 16:
        contingency = Table("A \\ B", title="contingency (images)", title_justify="left")
        for cluster in result.clusters_b:
            contingency.add_column(str(cluster), justify="right")
        for cluster, row in zip(result.clusters_a, result.contingency):
            contingency.add_row(str(cluster), *(f"{n:,}" if n else "[dim]·[/]" for n in row))
        console.print(contingency)
    console.print(f"{len(result.moved):,} images moved (not in the B cluster their A cluster matched)"
                  + (":" if result.moved and moved else "."))
    for image in result.moved[:moved]:
        console.print(f"  {escape(str(image.path))}: A {image.cluster_a} → B {image.cluster_b}", soft_wrap=True)


def _shown_names(key: str, folder: Path | None, workspace: Path | None, level: str | None) -> dict[int, str]:
    """The names a run's clusters show; at a level, its tree nodes' names."""
    if level is None:
        return {int(c): n["name"] for c, n in api.run_info(key, path=folder, workspace=workspace)["names"].items()}
    return {n["id"]: n["name"] for n in api.cluster_tree(key, path=folder, workspace=workspace)["nodes"]}


@app.command("stability")
def stability_command(
    path: Annotated[Optional[Path], typer.Argument(help="The image folder whose workspace to use.")] = None,
    repeats: Annotated[int, typer.Option(help="Refits with other seeds; 5-10.")] = 5,
    subsample: Annotated[Optional[float], typer.Option(help="Share of the images each refit sees (e.g. 0.8); "
                                                            "unset: all of them.")] = None,
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    workspace: WorkspaceOption = None,
    folder: FolderAlias = None,
    as_json: JsonOption = False,
) -> None:
    """Refit a run with other seeds: each cluster's stability, a consensus, unstable clusters flagged."""
    path = folder_or_path(path, folder)
    run = chosen_run(run, path, workspace)
    with progress_bar(enabled=not as_json) as on_progress:
        measured = api.stability(path, run=run, repeats=repeats, subsample=subsample, workspace=workspace,
                                 progress=on_progress)
    if as_json:
        console.print_json(json.dumps(measured.to_dict()))
        return
    table = Table("cluster", "size", "stability", "per refit", "",
                  title=f"run {measured.run} · {measured.repeats} refits (seeds "
                        f"{', '.join(map(str, measured.seeds))})", title_justify="left")
    for c in sorted(measured.clusters, key=lambda c: c.stability):
        table.add_row(str(c.cluster), f"{c.size:,}", f"{c.stability:.2f}", " ".join(f"{v:.2f}" for v in c.per_repeat),
                      "[bold red]unstable[/]" if c.stability < measured.threshold else "")
    console.print(table)
    console.print(f"{len(measured.unstable)} unstable cluster(s) (stability below {measured.threshold}); "
                  f"refits' ARI with the run: {', '.join(f'{v:.3f}' for v in measured.repeat_ari)}; the consensus "
                  f"moves {measured.changed:,} images (mean agreement {measured.agreement.mean():.2f}).")
    console.print(f"Consensus: {escape(str(measured.outputs['consensus']))}", soft_wrap=True)
    print_report_path(measured.outputs["report"])


def _date(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")
