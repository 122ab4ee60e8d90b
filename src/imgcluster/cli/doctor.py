"""`imgcluster doctor`: check a workspace's files and, with --repair, mend them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .. import api
from ..config import EmbedConfig
from .common import FolderAlias, app, console, folder_or_path, option_default, option_help


@app.command("doctor")
def doctor_command(
    path: Annotated[Optional[Path], typer.Argument(help="The clustered folder (its workspace is "
                                                        "PATH/.imgcluster).")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder (default: PATH/.imgcluster).")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Repair what is found: embed lost vectors again, rebuild "
                                                          "predictors and indexes, move what can't be saved to "
                                                          "WORKSPACE/quarantine/ (nothing is deleted).")] = False,
    device: Annotated[str, typer.Option(help="Where to embed lost vectors again: " + option_help(EmbedConfig, "device"))
                      ] = option_default(EmbedConfig, "device"),
    as_json: Annotated[bool, typer.Option("--json", help="Print problems and repairs as JSON.")] = False,
    folder: FolderAlias = None,
) -> None:
    """Check a workspace (catalogue, vector shards, runs, indexes); exit 0 when healthy, 1 when problems remain."""
    path = folder_or_path(path, folder)
    checkup = api.doctor(path, workspace=workspace, repair=repair, device=device)
    if as_json:
        console.print_json(json.dumps({
            "workspace": str(checkup.workspace), "healthy": checkup.healthy,
            "problems": [dict(dataclasses.asdict(p), repair=p.repair) for p in checkup.problems],
            "actions": [dataclasses.asdict(a) for a in checkup.actions],
            "remaining": [dataclasses.asdict(p) for p in checkup.remaining]}))
    else:
        _show(checkup, repair)
    if not checkup.healthy:
        raise SystemExit(1)  # click returns, not raises, a typer.Exit when not standalone


def _show(checkup: api.Checkup, repair: bool) -> None:
    if not checkup.problems:
        console.print(f"[green]ok[/]: {escape(str(checkup.workspace))} is healthy (catalogue, vectors, runs, indexes).")
        return
    table = Table("kind", "what is wrong", "--repair", title=f"{len(checkup.problems)} problems in "
                  f"{escape(str(checkup.workspace))}", title_justify="left")
    for problem in checkup.problems:
        table.add_row(problem.kind, escape(problem.message), escape(problem.repair))
    console.print(table)
    for action in checkup.actions:
        mark = "[green]repaired[/]" if action.done else "[yellow]left[/]"
        console.print(f"{mark} {action.kind}: {escape(action.message)}", soft_wrap=True)
    if not repair:
        console.print("Run `imgcluster doctor --repair` (with the same PATH or --workspace) to repair them.")
    elif checkup.remaining:
        console.print(f"[red]{len(checkup.remaining)} problems remain[/]: "
                      + "; ".join(escape(p.message) for p in checkup.remaining), soft_wrap=True)
    else:
        console.print("[green]ok[/]: the workspace is healthy now.")
