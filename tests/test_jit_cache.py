"""numba's compiled code is kept in the user's cache folder, so only the first process compiles."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imgcluster import jit_cache

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A fresh process: the cache set up the way imgcluster does before numba loads, then one kernel
# declared without cache=True, cached through cache_kernels and called.
FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    from imgcluster.jit_cache import cache_kernels, use_numba_cache
    folder = use_numba_cache()
    import numba
    sys.path.insert(0, sys.argv[1])
    from kernels import total
    cache_kernels([total])
    import numpy as np
    assert total(np.array([1.0, 2.0])) == 3.0
    print(json.dumps({"folder": str(folder), "numba_dir": numba.config.CACHE_DIR,
                      "hits": sum(total.stats.cache_hits.values()),
                      "misses": sum(total.stats.cache_misses.values())}))
""")


def run_fresh(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != jit_cache.CACHE_ENV}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=SRC)
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "code")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_fresh_process_loads_what_the_first_compiled(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "kernels.py").write_text(textwrap.dedent("""
        import numba

        @numba.njit
        def total(values):
            result = 0.0
            for value in values:
                result += value
            return result
    """))
    first = run_fresh(tmp_path)
    expected = tmp_path / "cache" / "imgcluster" / "numba"
    assert first["folder"] == first["numba_dir"] == str(expected)
    assert first["misses"] == 1 and first["hits"] == 0
    assert list(expected.rglob("kernels.total-*.nbi"))  # the index numba reads back
    second = run_fresh(tmp_path)
    assert second["misses"] == 0 and second["hits"] == 1


# A fresh process importing a module whose kernel numba compiles at import (a signature given,
# as umap-learn's umap.utils does), inside eager_kernels_cached.
EAGER_PROCESS = textwrap.dedent("""
    import json, sys
    from imgcluster.jit_cache import eager_kernels_cached, use_numba_cache
    use_numba_cache()
    import numba
    sys.path.insert(0, sys.argv[1])
    with eager_kernels_cached(("eager",)):
        from eager import total, later
        from other import twice
    import numpy as np
    assert total(np.array([1.0, 2.0])) == 3.0 and later(2.0) == 4.0 and twice(2.0) == 4.0
    print(json.dumps({"hits": sum(total.stats.cache_hits.values()),
                      "misses": sum(total.stats.cache_misses.values()),
                      "later_cached": type(later._cache).__name__ != "NullCache",
                      "other_cached": type(twice._cache).__name__ != "NullCache",
                      "restored": numba.njit.__module__ == "numba.core.decorators"}))
""")


def test_kernels_compiled_at_import_are_loaded_by_the_next_process(tmp_path: Path) -> None:
    # umap-learn compiles tau_rand_int and tau_rand when imported, in every process, 0.1-0.25 s.
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "eager.py").write_text(textwrap.dedent("""
        import numba

        @numba.njit("f8(f8[:])")
        def total(values):
            result = 0.0
            for value in values:
                result += value
            return result

        @numba.njit
        def later(value):
            return value * 2.0
    """))
    (tmp_path / "code" / "other.py").write_text(textwrap.dedent("""
        import numba

        @numba.njit("f8(f8)")
        def twice(value):
            return value * 2.0
    """))
    env = {k: v for k, v in os.environ.items() if k != jit_cache.CACHE_ENV}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=SRC)

    def fresh() -> dict:
        done = subprocess.run([sys.executable, "-c", EAGER_PROCESS, str(tmp_path / "code")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = fresh(), fresh()
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["misses"] == 0 and second["hits"] == 1
    assert not second["later_cached"]  # lazily compiled kernels are left to cache_kernels
    assert not second["other_cached"]  # so are the kernels of modules not named
    assert second["restored"]  # numba.njit is numba's own again after the import


def test_a_kernel_numba_cannot_cache_is_compiled_as_before(caplog) -> None:
    numba = pytest.importorskip("numba")
    namespace: dict = {"__name__": "made_here"}
    exec("def plus_one(x):\n    return x + 1.0\n", namespace)  # no source file: nowhere to cache it
    with caplog.at_level(logging.INFO, logger="imgcluster.jit_cache"), jit_cache.eager_kernels_cached(("made_here",)):
        kernel = numba.njit("f8(f8)")(namespace["plus_one"])
    assert kernel(1.0) == 2.0
    assert "cannot cache plus_one" in caplog.text


def test_two_threads_importing_at_once_leave_numba_njit_as_it_was() -> None:
    # The web app's jobs may import umap from two threads: the second must not keep the first's
    # wrapper as "the original" and put it back after the first has restored numba's own.
    numba = pytest.importorskip("numba")
    original = numba.njit
    first_inside, second_inside = threading.Event(), threading.Event()

    def first() -> None:
        with jit_cache.eager_kernels_cached(("nothing_here",)):
            first_inside.set()
            second_inside.wait(timeout=0.5)  # leaves first, while the second is (or would be) inside

    def second() -> None:
        first_inside.wait(timeout=5)
        with jit_cache.eager_kernels_cached(("nothing_here",)):
            second_inside.set()
            time.sleep(0.2)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert numba.njit is original


def test_a_cache_folder_that_cannot_be_written_leaves_numba_alone(tmp_path: Path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.delenv(jit_cache.CACHE_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "numba", raising=False)  # as before numba loads
    with caplog.at_level(logging.INFO, logger="imgcluster.jit_cache"):
        assert jit_cache.use_numba_cache() is None
    assert jit_cache.CACHE_ENV not in os.environ
    assert "will not be kept" in caplog.text


def test_a_cache_folder_the_user_chose_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(jit_cache.CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit_cache.use_numba_cache() == tmp_path / "mine"
    assert not (tmp_path / "xdg").exists()


def test_umaps_uncached_kernels_are_cached_after_a_reduce() -> None:
    pytest.importorskip("umap")
    import imgcluster

    rng = np.random.default_rng(0)
    imgcluster.reduce(rng.normal(size=(60, 16)).astype(np.float32))
    from umap import layouts, umap_

    for kernel in (umap_.smooth_knn_dist, umap_.compute_membership_strengths,
                   layouts._nb_optimize_layout_euclidean_single_epoch):
        assert Path(kernel._cache.cache_path).is_dir(), kernel.py_func.__name__
        assert kernel.stats.cache_hits or kernel.stats.cache_misses  # looked up on disk, not only compiled
