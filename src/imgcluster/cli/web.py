"""`imgcluster serve`: the local web app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import ConfigError
from .common import FolderAlias, app, console, err, folder_or_path


@app.command("serve")
def serve_command(
    path: Annotated[Path | None, typer.Argument(help="The clustered folder whose workspace to open.")] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder (default: the image folder's "
                                                           ".imgcluster, or ./.imgcluster).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it to this machine. Any other "
                                           "address needs a token: whoever has it sees the images and can edit "
                                           "runs.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[str | None, typer.Option(
        envvar="IMGCLUSTER_TOKEN", help="Require this token on every request (header 'Authorization: Bearer "
        "TOKEN', or open /?token=TOKEN once in a browser). With a --host other than 127.0.0.1 one is made up "
        "and printed when not given.")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload (or other request body) accepted, in MB; "
                                                      "larger ones get 413.")] = 25.0,
    folder_given: FolderAlias = None,
) -> None:
    """Explore the runs in a browser: the map, clusters, images and their neighbours. Ctrl-C stops it.

    Rename, merge and move clusters; file new images; text search (CLIP-like models)."""
    try:
        from ..web.app import check_address, find_workspace, serve
        from ..web.security import is_loopback, new_token
    except ImportError as error:
        raise ConfigError(f"The web app needs FastAPI and uvicorn ({error.name} is missing): "
                          "pip install 'imgcluster[web]'.") from None
    folder = find_workspace(folder_or_path(path, folder_given), workspace=workspace)
    check_address(host, port)  # before "serving …" is printed
    if max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be positive; got {max_upload_mb}.")
    if not is_loopback(host):
        err.print(f"[bold yellow]warning:[/] listening on {host}: other machines can reach this server. Every "
                  "request needs the token; share it only with people who may see these images.", soft_wrap=True)
        token = token or new_token()
    url = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    console.print(f"imgcluster: serving {escape(str(folder))} at [bold]{url}[/] (API docs at /api/docs); "
                  "Ctrl-C stops it.", soft_wrap=True)
    serve(workspace=folder, host=host, port=port, token=token, max_upload_mb=max_upload_mb)
