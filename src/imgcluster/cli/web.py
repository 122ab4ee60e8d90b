"""`imgcluster serve`: the local web app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from . import app, console


@app.command("serve")
def serve_command(
    path: Annotated[Path | None, typer.Argument(help="The clustered folder whose workspace to open.")] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder (default: the image folder's "
                                                           ".imgcluster, or ./.imgcluster).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it to this machine (the app has "
                                           "no login: whoever reaches it sees the images and can edit runs)."
                                      )] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Explore the runs in a browser: the map, clusters, images and their neighbours; rename, merge,
    move; file new images; text search (CLIP-like models). Ctrl-C stops it."""
    try:
        from ..web.app import find_workspace, serve
    except ImportError as error:
        raise ConfigError(f"The web app needs FastAPI and uvicorn ({error.name} is missing): "
                          "pip install 'imgcluster[web]'.") from None
    folder = find_workspace(path, workspace=workspace)
    console.print(f"imgcluster: serving {folder} at [bold]http://{host}:{port}/[/] (API docs at /api/docs); "
                  "Ctrl-C stops it.", soft_wrap=True)
    serve(workspace=folder, host=host, port=port)
