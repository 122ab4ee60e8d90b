"""What every router needs: the app's Explorer, and the optional run key of a request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from ..state import Explorer

# Run keys are letters, digits, '.', '_' and '-' (see api.job): anything else never reaches the store.
RUN_KEY = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RunQuery = Annotated[str | None, Query(pattern=RUN_KEY,
                                       description="Run key; the newest run with clusters when absent.")]


def explorer(request: Request) -> Explorer:
    return request.app.state.explorer


ExplorerDep = Annotated[Explorer, Depends(explorer)]
