"""The FastAPI app: one router per resource under ``/api/``, the static front-end at ``/``."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..embed import check_device
from ..errors import (
    ConfigError,
    ImgclusterError,
    ModelUnavailable,
    RunNotFound,
    UnknownName,
    WorkspaceBusy,
    WorkspaceDamaged,
    WorkspaceNotFound,
    WorkspaceTooNew,
)
from ..store import damage_message, is_corruption
from .routers import clusters, export, facets, images, runs, search, tree
from .security import (
    DEFAULT_MAX_UPLOAD_MB,
    BodyLimit,
    LocalHostOnly,
    TokenAuth,
    header_deadline_protocol,
    is_loopback,
)
from .state import Explorer

STATIC = Path(__file__).parent / "static"
# On SIGTERM or Ctrl-C, requests in flight get this long to finish; then those that wait (a run's
# facets being built, routers/facets.py) are cancelled, so the server exits promptly.
GRACE_S = 3

# How each error of the tree reaches the browser; the message already says what to do. A model the
# run cannot use (no text tower, weights not here) is the run's state, not a server fault: 409, not 5xx.
# A damaged workspace is the server's state, not the request's fault, and `doctor --repair` mends it: 503.
_STATUS = [(RunNotFound, 404), (WorkspaceNotFound, 404), (WorkspaceBusy, 409), (ModelUnavailable, 409),
           (WorkspaceTooNew, 409), (WorkspaceDamaged, 503), (ConfigError, 400), (UnknownName, 400),
           (ImgclusterError, 400)]


def create_app(workspace: str | os.PathLike[str], *, device: str = "auto", token: str | None = None,
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, local_only: bool = False) -> FastAPI:
    """The app for one workspace folder (``PATH/.imgcluster`` or a ``--workspace`` folder).

    ``token``: every request must carry it (see security.TokenAuth); ``max_upload_mb``: larger request
    bodies get 413; ``local_only``: answer only requests addressed to localhost/127.0.0.1 (security.LocalHostOnly)."""
    if max_upload_mb <= 0:
        raise ConfigError(f"max_upload_mb must be positive; got {max_upload_mb}.")
    check_device(device)
    explorer = Explorer(workspace, device=device)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        explorer.close()

    app = FastAPI(title="imgcluster", version="1", summary="Explore a workspace's runs: map, clusters, images, "
                  "nearest neighbours, filing new images, text search.", docs_url=None,
                  openapi_url="/api/openapi.json", redoc_url=None, lifespan=lifespan)
    app.state.explorer = explorer
    app.state.max_upload_bytes = int(max_upload_mb * 2**20)
    app.add_middleware(BodyLimit, max_bytes=app.state.max_upload_bytes)
    if token:
        app.add_middleware(TokenAuth, token=token)
    if local_only:
        app.add_middleware(LocalHostOnly)

    @app.exception_handler(ImgclusterError)
    async def _imgcluster_error(request: Request, error: ImgclusterError) -> JSONResponse:
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.exception_handler(sqlite3.DatabaseError)
    async def _damaged_catalogue(request: Request, error: sqlite3.DatabaseError) -> JSONResponse:
        if not is_corruption(error):
            return JSONResponse({"detail": "The catalogue could not be read; try again."}, status_code=503)
        return JSONResponse({"detail": damage_message(explorer.workspace, f"its catalogue is corrupt ({error})")},
                            status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_problems(error)}, status_code=422)

    for router in (runs.router, clusters.router, images.router, search.router, facets.router, export.router,
                   tree.router):
        app.include_router(router, prefix="/api")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # Swagger UI loads from a CDN and is blank offline; this page lists the endpoints from the
    # OpenAPI schema with the app's own script.
    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> FileResponse:
        return FileResponse(STATIC / "api-docs.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def validation_problems(error: RequestValidationError) -> list[dict[str, Any]]:
    """What was wrong with a request, without echoing what was sent: FastAPI's default answer
    repeats the input, and an input of 1e400, NaN or a lone surrogate cannot be written back as
    JSON (the answer became a 500). Where and what, in ASCII-safe text."""
    def text(value: object) -> str:
        return str(value).encode("utf-8", "backslashreplace").decode("utf-8")

    return [{"loc": [item if isinstance(item, int) else text(item) for item in problem.get("loc", ())],
             "msg": text(problem.get("msg", "invalid")), "type": text(problem.get("type", "value_error"))}
            for problem in error.errors()]


def find_workspace(path: str | os.PathLike[str] | None = None, *,
                   workspace: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder to serve (``workspace``, else ``path``'s ``.imgcluster``); ConfigError
    when there is none yet."""
    from ..store import locate_workspace

    folder = locate_workspace(path, workspace)
    if not (folder / "catalogue.db").exists():
        raise ConfigError(f"No imgcluster workspace at {folder}. Run `imgcluster cluster PATH` first, or pass "
                          "--workspace.")
    return folder.resolve()


def check_address(host: str, port: int) -> None:
    """Raise ConfigError, before anything is printed or loaded, when the server could not listen on
    ``host``:``port`` (a port outside 1-65535, a host that is not this machine's, a port in use or
    one that needs root). The port is bound for a moment and released."""
    import errno
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port must be 1-65535; got {port!r}. Pick another --port (8000 is the default).")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f"Cannot listen on host {host!r}: {error}. Give an address of this machine, such as "
                          "127.0.0.1 or 0.0.0.0.") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as error:
            hint = {errno.EADDRINUSE: "another program uses it; pick another --port",
                    errno.EACCES: "ports below 1024 need root; pick one from 1024",
                    errno.EADDRNOTAVAIL: "that address is not this machine's; use 127.0.0.1 or 0.0.0.0"
                    }.get(error.errno or 0, "pick another --host or --port")
            raise ConfigError(f"Cannot listen on {host}:{port} ({error.strerror}): {hint}.") from None


def serve(path: str | os.PathLike[str] | None = None, *, workspace: str | os.PathLike[str] | None = None,
          host: str = "127.0.0.1", port: int = 8000, device: str = "auto", token: str | None = None,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> None:
    """Run the app with uvicorn until interrupted (the workspace of ``path``, or ``workspace``).

    Beyond this machine (a ``host`` that is not loopback) a ``token`` is required; without one the
    app answers only requests addressed to localhost."""
    folder = find_workspace(path, workspace=workspace)
    if not token and not is_loopback(host):
        raise ConfigError(f"Listening on {host} lets other machines reach the images: give a token "
                          "(imgcluster serve --host ... prints one).")
    check_address(host, port)
    # Idle OpenMP threads otherwise spin, and on a busy 2-core machine filing an upload took 0.4-1.8 s
    # instead of 50 ms (bench/web.py). Read when torch loads, which is later: on the first upload.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    app = create_app(folder, device=device, token=token, max_upload_mb=max_upload_mb, local_only=not token)
    uvicorn.run(app, host=host, port=port, log_level="warning", http=header_deadline_protocol(),
                timeout_graceful_shutdown=GRACE_S)
