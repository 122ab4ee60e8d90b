"""`imgcluster update` (file new images into a run, propose new clusters) and `imgcluster proposals`."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .. import api
from ..cluster.openset import HELD_WORDS
from .common import (FolderAlias, app, chosen_run, console, err, folder_or_path, id_and_name, print_report_path,
                     print_warnings, progress_bar)

WorkspaceOption = Annotated[Optional[Path], typer.Option(help="Workspace folder (default: the image folder's "
                                                               ".imgcluster).")]


@app.command("update")
def update_command(
    path: Annotated[Path, typer.Argument(help="The clustered folder, with new, changed or removed files.")],
    run: Annotated[Optional[str], typer.Option(help="The run to update (default: the newest run with "
                                                    "clusters).")] = None,
    workspace: WorkspaceOption = None,
    min_probability: Annotated[float, typer.Option(
        help="Hold a new image as unassigned below this membership probability (0-1).")] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Put every held image in its nearest image's cluster "
                                                        "(the similarity is recorded).")] = False,
    propose: Annotated[bool, typer.Option(help="Propose new clusters from cohesive groups of held and "
                                               "unclustered images.")] = True,
    held_quantile: Annotated[Optional[float], typer.Option(
        help="Override the run's held quantile (see `cluster --held-quantile`): hold a new image less typical of "
             "its cluster than this share of the cluster's own members; 0-0.5, 0 files by the vote alone.",
        min=0.0, max=0.5)] = None,
    watch: Annotated[Optional[float], typer.Option(help="Keep running: look for new files every N seconds "
                                                        "(Ctrl-C stops).", min=1.0)] = None,
    run_key: Annotated[Optional[str], typer.Option(help="Key for the new run (default: date-time).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """File new images into a run's clusters without refitting, as a new derived run.

    Every image keeps its cluster id, and cohesive groups that fit no cluster are proposed as new
    clusters (see proposals)."""
    while True:
        run = chosen_run(run, path, workspace)
        with progress_bar(enabled=not as_json) as on_progress:
            done = api.update(path, run=run, workspace=workspace, min_probability=min_probability, force=force,
                              propose=propose, run_key=run_key, progress=on_progress,
                              held_quantile=held_quantile)
        _print_update(done, as_json)
        if watch is None:
            return
        run, run_key = None, None  # the next round updates the newest run with clusters
        time.sleep(watch)


def _print_update(done: api.Update, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({
            "run": done.run.key, "parent": done.parent, "saved": done.saved, "new_images": done.n_new,
            "removed_images": done.n_removed, "changed_images": done.n_changed, "filed": done.n_filed,
            "held": done.n_held, "held_by": done.held_by, "forced": done.n_forced,
            "proposed": [dataclasses.asdict(p) for p in done.proposed], "drift": done.drift,
            "warnings": done.run.warnings,
            "seconds": {k: round(v, 3) for k, v in done.seconds.items()},
            "report": str(done.run.outputs.get("report", ""))}))
        return
    if not done.saved:
        console.print(f"Nothing new or removed since run {done.parent}; no new run.")
        return
    proposed = sum(p.new_images for p in done.proposed)
    images = "image" if done.n_new == 1 else "images"
    console.print(f"Run [bold]{done.run.key}[/] from {done.parent}: {done.n_new:,} new {images} — {done.n_filed:,} "
                  f"filed into existing clusters, {done.n_forced:,} forced, {proposed:,} in proposed new clusters, "
                  f"{done.n_held:,} held; {done.n_removed:,} removed"
                  + (f", {done.n_changed:,} rewritten (filed again)" if done.n_changed else "")
                  + ". Existing images kept their clusters.",
                  soft_wrap=True)
    if done.held_by:
        console.print("Held when filed, by the test they failed: " + "; ".join(
            f"{count:,} {HELD_WORDS.get(test, test)}" for test, count in done.held_by.items())
            + (" (proposals and --force then took some)" if done.proposed or done.n_forced else "") + ".",
            soft_wrap=True)
    if done.proposed:
        table = Table("proposed cluster", "images", "new images", title="New clusters proposed")
        for p in done.proposed:
            table.add_row(id_and_name(p.cluster, _name_of(done.run, p.cluster)), str(p.size), str(p.new_images))
        console.print(table)
        console.print(f"Accept or reject them: imgcluster proposals --run {done.run.key} --accept ID --reject ID",
                      soft_wrap=True)
    if done.drift:
        err.print(f"[yellow]{escape(done.drift)}[/]", soft_wrap=True)
    print_warnings(done.run.warnings)
    if "report" in done.run.outputs:
        print_report_path(done.run.outputs["report"])


@app.command("proposals")
def proposals_command(
    path: Annotated[Optional[Path], typer.Argument(help="The image folder whose workspace to use.")] = None,
    run: Annotated[Optional[str], typer.Option(help="The run whose proposals to review (default: the newest "
                                                    "run with clusters).")] = None,
    accept: Annotated[Optional[list[int]], typer.Option(help="A proposed cluster to keep (repeatable).")] = None,
    reject: Annotated[Optional[list[int]], typer.Option(help="A proposed cluster to drop: its images are held "
                                                             "again (repeatable).")] = None,
    workspace: WorkspaceOption = None,
    folder: FolderAlias = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the new clusters an update proposed; with --accept/--reject, decide (as a new derived run)."""
    path = folder_or_path(path, folder)
    run = chosen_run(run, path, workspace)
    if accept or reject:
        reviewed = api.review_proposals(accept=accept or [], reject=reject or [], run=run, path=path,
                                        workspace=workspace)
        pending = reviewed.record.proposed
        console.print(f"Run [bold]{reviewed.key}[/]: accepted {accept or []}, rejected {reject or []}; "
                      f"{len(pending)} still proposed.", soft_wrap=True)
        return
    record = api.load_run(run, path=path, workspace=workspace)
    pending = [dataclasses.asdict(p) for p in record.record.proposed]
    if as_json:
        console.print_json(json.dumps({"run": record.key, "proposed": [
            dict(p, name=_name_of(record, p["cluster"])) for p in pending]}))
        return
    if not pending:
        console.print(f"Run {record.key} proposes no new clusters.")
        return
    paths = {r.id: r.path for r in record.images}
    table = Table("cluster", "images", "new images", "examples", title=f"Proposed in run {record.key}")
    for p in pending:
        examples = Counter(Path(paths[i]).parent.name for i in p["representatives"] if i in paths)
        shown = ", ".join(Path(paths[i]).name for i in p["representatives"][:3] if i in paths)
        table.add_row(id_and_name(p["cluster"], _name_of(record, p["cluster"])), str(p["size"]), str(p["new_images"]),
                      shown + (f"  (folders: {', '.join(examples)})" if examples else ""))
    console.print(table)


def _name_of(run: api.Run, cluster: int) -> str | None:
    """The name ``cluster`` shows in ``run``, or None."""
    chosen = run.names.get(cluster)
    return chosen.name if chosen is not None and chosen.name else None
