"""Keep numba's compiled code between processes, so only the first run on a machine compiles.

umap-learn compiles its kernels with numba the first time a process calls them; several are not
marked for numba's on-disk cache, so every new ``imgcluster cluster`` paid their compilation again
(the layout kernel alone ~2 s on 2 busy cores). ``use_numba_cache`` points numba's cache at
``$XDG_CACHE_HOME/imgcluster/numba`` (``~/.cache/imgcluster/numba``) before numba loads, and
``cache_kernels`` turns the cache on for the uncached kernels the pipeline calls, and
``eager_kernels_cached`` for those umap-learn compiles while it is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV = "NUMBA_CACHE_DIR"  # numba's own setting: a folder the user set wins


def user_cache_dir() -> Path:
    """imgcluster's folder in the user's cache: ``$XDG_CACHE_HOME/imgcluster``, ``~/.cache/imgcluster``
    when XDG_CACHE_HOME is unset (compiled kernels, exported models: all can be deleted at any time)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgcluster"


def numba_cache_dir() -> Path:
    """Where imgcluster asks numba to keep compiled code: ``$XDG_CACHE_HOME/imgcluster/numba``,
    ``~/.cache/imgcluster/numba`` when XDG_CACHE_HOME is unset."""
    return user_cache_dir() / "numba"


def use_numba_cache() -> Path | None:
    """Set ``NUMBA_CACHE_DIR`` to ``numba_cache_dir()`` unless the user set it; returns the folder
    numba will cache in, or None where numba keeps its own default (beside each library's source
    when writable, else its user cache).

    Must run before numba is imported: numba reads the setting once, and umap-learn's cached
    kernels choose their folder when umap is imported. A folder that cannot be written is left
    alone (numba would otherwise fail to cache, not fall back); the run goes on either way.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if "numba" in sys.modules:  # too late to move it; numba's defaults still cache
        return None
    folder = numba_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        log.info("numba's compiled code will not be kept in %s (%s); numba's default cache is used instead",
                 folder, error)
        return None
    os.environ[CACHE_ENV] = str(folder)
    return folder


def cache_kernels(kernels: Iterable[Any]) -> None:
    """Turn on numba's on-disk cache for compiled functions (numba dispatchers) that were not
    declared with ``cache=True``; one that cannot be cached is compiled as before, with a log line."""
    for kernel in kernels:
        if not hasattr(kernel, "enable_caching") or getattr(kernel, "_cache_enabled_by_imgcluster", False):
            continue
        try:
            kernel.enable_caching()
        except (RuntimeError, OSError) as error:  # numba found no writable folder for it
            log.info("numba cannot cache %s (%s); it compiles in every process", kernel.py_func.__name__, error)
        kernel._cache_enabled_by_imgcluster = True


# eager_kernels_cached replaces numba.njit, a module attribute every thread sees: one patch at a time.
_PATCHING = threading.Lock()


@contextlib.contextmanager
def eager_kernels_cached(modules: tuple[str, ...]) -> Iterator[None]:
    """While ``modules`` (names or their prefixes, e.g. ``("umap.",)``) are imported inside this
    block, the numba kernels they compile at import (``njit`` given a signature) and did not mark
    for the cache are kept on disk too. Kernels of other modules are left alone, as are kernels
    compiled lazily and those whose library chose ``cache`` itself.

    umap-learn compiles two such kernels (``umap.utils.tau_rand_int``, ``tau_rand``) in every new
    process, 0.1-0.25 s of its import on 2 cores; ``cache_kernels`` cannot help those, as they are
    compiled before the import returns. numba's cache is keyed by the source file and its
    timestamp, so an upgraded library compiles afresh. A kernel numba cannot cache (no folder, a
    full disk) is compiled as before."""
    import numba

    with _PATCHING:
        original = numba.njit

        def njit(*args: Any, **kwargs: Any) -> Any:
            if not args or callable(args[0]) or "cache" in kwargs:  # compiled lazily, or the library chose
                return original(*args, **kwargs)
            cached, plain = original(*args, cache=True, **kwargs), original(*args, **kwargs)

            def decorate(function: Any) -> Any:
                if not (getattr(function, "__module__", None) or "").startswith(modules):
                    return plain(function)
                try:
                    return cached(function)
                except (RuntimeError, OSError) as error:  # no folder numba can cache in, a full disk
                    log.info("numba cannot cache %s (%s); it compiles in every process", function.__name__, error)
                    return plain(function)
            return decorate

        numba.njit = njit
        try:
            yield
        finally:
            if numba.njit is njit:
                numba.njit = original
