"""Whether numba is compiling right now, for progress displays.

umap-learn and pynndescent compile their numba kernels on first use in a process (a few are cached
on disk afterwards, most are not): on 2 cores that is 20-25 s of a first reduce with no epoch to
count. A display can say so while it happens instead of showing a bar that does not move.
"""

from __future__ import annotations

import sys
import threading
import time

_lock = threading.Lock()
_compiling = 0                   # compilations under way (numba compiles callees inside callers)
_last_end = float("-inf")        # time.monotonic() when the last one ended
_watching = False


def numba_compiling(linger: float = 1.0) -> bool:
    """True while numba compiles a function in this process, or finished one under ``linger``
    seconds ago (compilations come in bursts of small ones). Watching starts on the first call after
    numba has been imported, by whoever imports it: importing numba here would cost about a second
    to commands that never use it, so compilations before that first call go unseen."""
    if not _watch():
        return False
    with _lock:
        return _compiling > 0 or time.monotonic() - _last_end < linger


def _watch() -> bool:
    """Register a listener for numba's compile events (its documented event API), once."""
    global _watching
    if _watching:
        return True
    event = sys.modules.get("numba.core.event")
    if event is None or not hasattr(event, "Listener") or not hasattr(event, "register"):
        return False  # numba not imported (or still importing): nothing can be compiling through it

    class Listener(event.Listener):  # type: ignore[name-defined,misc]
        def on_start(self, _event: object) -> None:
            global _compiling
            with _lock:
                _compiling += 1

        def on_end(self, _event: object) -> None:
            global _compiling, _last_end
            with _lock:
                _compiling, _last_end = max(0, _compiling - 1), time.monotonic()

    with _lock:
        if not _watching:
            event.register("numba:compile", Listener())
            _watching = True
    return True
