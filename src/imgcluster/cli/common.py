"""What every `imgcluster` command module shares: the typer app, the consoles, options built from
config fields, progress bars, and how runs, names and warnings are shown. The command modules
(``cli/__init__.py``, ``runs.py``, ``search.py``…) import from here, never from each other."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Column
from rich.text import Text

from .. import api
from ..compiling import numba_compiling
from ..errors import ConfigError
from ..store import ClusterName

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cluster a folder of images: embed, reduce, cluster, and look at the result.")
console = Console()
err = Console(stderr=True)


def option_help(cls: type, name: str) -> str:
    """The help of config field ``cls.name`` as an option's help: ``--help`` reads it as rich markup,
    which would swallow a word in brackets ("pip install 'imgcluster[dedup]'"), so those are escaped."""
    return escape(next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name))


def option_default(cls: type, name: str) -> Any:
    """The default of config field ``cls.name``: options take it from there, never restate it."""
    return getattr(cls(), name)


def setting(cls: type, name: str, *flags: str, prefix: str = "", **extra: Any) -> Any:
    """A ``typer.Option`` for config field ``cls.name`` whose value defaults to None, "not given" (so
    a preset's value stands): its help is the field's, and ends with the field's default."""
    default = option_default(cls, name)
    shown = "" if default is None else rf" \[default: {','.join(default) if isinstance(default, tuple) else default}]"
    return typer.Option(*flags, help=prefix + option_help(cls, name) + shown, show_default=False, **extra)


SET_HELP = ("Any other stage setting, as STAGE.FIELD=VALUE (repeatable): e.g. cluster.min_samples=5, "
            "reduce.n_neighbors=30, embed.workers=4; none unsets an optional one. The stages and their fields are "
            "the configuration reference's (ScanConfig … DedupConfig).")


# Notes on stderr (which run a command picked) wait for the command's first progress bar or its
# end: a command refused on the way says one line, the refusal, which names the run where it matters.
notes_waiting: list[str] = []


def say_notes(*_: object, **__: object) -> None:
    while notes_waiting:
        err.print(f"[dim]{escape(notes_waiting.pop(0))}[/]", soft_wrap=True)


def progress_bar(enabled: bool):  # type: ignore[no-untyped-def]
    """A context manager yielding a ``progress(stage, done, total)`` callback drawing rich bars: a
    spinner while a stage runs, and "compiling numba…" in place of its ETA while numba compiles."""
    import contextlib

    @contextlib.contextmanager
    def manager():  # type: ignore[no-untyped-def]
        if not enabled:
            yield None
            return
        running: list[int] = []  # the stage that ticked last
        bars = Progress(SpinnerColumn(finished_text=" "), TextColumn("{task.description:<8}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        _EtaColumn(running), console=err, transient=False)
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                if not tasks:  # started with the first stage: a command refused before any work prints no bar
                    say_notes()
                    bars.start()
                tasks[stage] = bars.add_task(stage, total=total, rate="")
            running[:] = [tasks[stage]]
            task = bars.tasks[tasks[stage]]
            rate = f"{done / task.elapsed:,.0f}/s" if task.elapsed and stage in ("scan", "embed") and done else ""
            bars.update(tasks[stage], completed=done, total=total, rate=rate)

        try:
            yield on_progress
        finally:
            if tasks:
                bars.stop()

    return manager()


class _EtaColumn(ProgressColumn):
    """The time left; on the running stage "compiling numba…" instead while numba compiles (a first
    run spends tens of seconds there without a tick, when an ETA has nothing to go on)."""

    def __init__(self, running: list[int]):
        super().__init__(table_column=Column(min_width=16, no_wrap=True))  # one width: the bars never shift
        self.running, self.remaining = running, TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        if not task.finished and task.id in self.running and numba_compiling():
            return Text("compiling numba…", style="yellow")
        return Text("eta ").append_text(self.remaining.render(task))


def print_report_path(report: object) -> None:
    """The "Report: PATH" line that ends a command writing a report (the path as it is, brackets too)."""
    console.print(f"Report: [bold green]{escape(str(report))}[/]", soft_wrap=True)


def print_warnings(warnings: list[str]) -> None:
    """A run's warnings (a degenerate answer and what to try), one line each."""
    for warning in warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def chosen_run(run: str | None, path: Path | None = None, workspace: Path | None = None) -> str:
    """``run`` as given; when None, the default run (the newest with clusters), said on stderr with
    why, so a command never works on a run the user did not see it pick."""
    if run is not None:
        return run
    chosen = api.default_run(path, workspace=workspace)
    notes_waiting.append(f"using run {chosen.key} ({chosen.reason})")
    return chosen.key



LEVEL_HELP = ("A level of the run's cluster tree: default (the run's own clusters), fine (the leaves: clusters "
              "split where they hold well separated parts), coarse, a number of clusters (1 to the leaves), or a "
              "tree node as node:ID (see `imgcluster tree`). Nothing is refitted.")


def id_and_name(cluster: int, name: str | None) -> str:
    """A cluster as tables show it: its id, then its name when it has one."""
    return f"{cluster} {escape(name)}" if name else str(cluster)


def trust(name: ClusterName | dict[str, Any]) -> str:
    """Where a name came from and how far to trust it: '(imagenet, sure 93%)', unsure ones in yellow.
    ``name``: a ClusterName or its JSON form (with ``level``)."""
    source, level, confidence = ((name.source, name.level, name.confidence) if isinstance(name, ClusterName)
                                 else (name["source"], name.get("level"), name.get("confidence")))
    if level is None or confidence is None:
        return f"[dim]({escape(source)})[/]"
    shown = "[yellow]unsure[/]" if level == "unsure" else level
    return f"[dim]({escape(source)}, [/]{shown}[dim] {confidence:.0%})[/]"


# The commands whose one argument is the clustered folder take it as PATH; `names`, `tree`, `predict`
# and the others with arguments of their own take --folder. Both forms work for the first kind.
FolderAlias = Annotated[Optional[Path], typer.Option(
    "--folder", help="The clustered folder, as PATH (the form `names`, `tree` and `predict` take).")]


def folder_or_path(path: Path | None, folder: Path | None) -> Path | None:
    """PATH, or --folder given in its place; both only when they name the same folder."""
    if path is not None and folder is not None and Path(path).resolve() != Path(folder).resolve():
        raise ConfigError(f"PATH ({path}) and --folder ({folder}) name two folders. Give one of them.")
    return path if path is not None else folder
