"""`imgcluster tree`: a run's clusters at every scale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from .. import api
from .common import LEVEL_HELP, app, chosen_run, console


@app.command("tree")
def tree_command(
    run: Annotated[Optional[str], typer.Option(help="Run key (default: the newest run with clusters).")] = None,
    level: Annotated[Optional[str], typer.Option("--level", help=LEVEL_HELP + " Given: list that cut's clusters "
                                                 "instead of the whole tree.")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="The clustered folder whose workspace to use.")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a run's cluster tree: ids, names, sizes and persistence, from its parts to the whole collection.

    The run's clusters (split into parts where they hold well separated ones) are merged up to the
    whole collection. Move along it with --level here, in export, evaluate and runs compare."""
    key = chosen_run(run, folder, workspace)
    tree = api.cluster_tree(key, path=folder, workspace=workspace, level=level)
    if as_json:
        console.print_json(json.dumps(tree))
        return
    finer = (f"fine level {tree['fine']} leaves (clusters split where they hold well separated parts)"
             if tree["fine"] > tree["default"] else "fine level the same (no cluster holds well separated parts)")
    console.print(f"run {tree['run']}: {tree['default']} clusters by default ({escape(tree['default_reason'])}); "
                  f"{finer}; coarse cut {tree['coarse']} clusters; {tree['linkage']} linkage in the {tree['space']} space"
                  + ("" if tree["stored"] else " (a run saved before trees: built now, not stored)"), soft_wrap=True)
    nodes = {n["id"]: n for n in tree["nodes"]}
    cut = tree.get("cut")
    if cut is not None:
        table = Table("node", "name", "size", "persistence", title=f"cut at level {escape(level)}: {len(cut)} clusters",
                      title_justify="left")
        for node in sorted(cut, key=lambda n: -nodes[n]["size"]):
            table.add_row(str(node), escape(nodes[node]["name"]), f"{nodes[node]['size']:,}",
                          f"{nodes[node]['persistence']:.2f}")
        console.print(table)
        return
    if tree["root"] is None:
        console.print("The run has no clusters, so its tree is empty.")
        return
    clusters = set(tree["clusters"])
    shown = Tree(_label(nodes[tree["root"]], nodes, clusters))
    _grow(shown, nodes[tree["root"]], nodes, clusters)
    console.print(shown)


def _label(node: dict[str, Any], nodes: dict[int, dict[str, Any]], clusters: set[int]) -> str:
    kind = "[dim]cluster[/] " if node["id"] in clusters else ""  # a part says so in its name
    coarsest = 1 if node["parent"] is None else nodes[node["parent"]]["k"] + 1
    span = f"{node['k']}" if coarsest == node["k"] else f"{coarsest}-{node['k']}"
    return (f"{kind}[bold]{node['id']}[/] {escape(node['name'])} [dim]({node['size']:,} images, persistence "
            f"{node['persistence']:.2f}, in cuts of {span})[/]")


def _grow(branch: Tree, node: dict[str, Any], nodes: dict[int, dict[str, Any]], clusters: set[int]) -> None:
    for child in sorted(node["children"], key=lambda c: -nodes[c]["size"]):
        _grow(branch.add(_label(nodes[child], nodes, clusters)), nodes[child], nodes, clusters)

