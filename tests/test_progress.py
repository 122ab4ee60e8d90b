"""Every stage that can take more than a moment reports live progress, and watching never changes
the result: UMAP epochs, auto mode's candidates, clusters named, the report's steps."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

import imgcluster
from imgcluster.cluster import AutoClusterer
from imgcluster.compiling import numba_compiling

from .conftest import write_photos


def assert_live(ticks: list[tuple[int, int]]) -> None:
    """(done, total) ticks of one stage: from 0, never backwards, something in between, ending at total."""
    done = [d for d, _ in ticks]
    assert done[0] == 0
    assert all(a <= b for a, b in zip(done, done[1:])), done
    assert any(0 < d < t for d, t in ticks), ticks
    assert ticks[-1][0] == ticks[-1][1] > 0
    assert all(d <= t for d, t in ticks)


def unit_vectors(n: int = 240, d: int = 24) -> np.ndarray:
    x, _ = make_blobs(n_samples=n, n_features=d, centers=4, random_state=0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_reduce_reports_umap_epochs_and_the_same_seed_gives_the_same_spaces() -> None:
    x = unit_vectors()
    config = imgcluster.ReduceConfig(n_epochs=30, map_n_epochs=20)
    ticks: list[tuple[int, int]] = []
    watched = imgcluster.reduce(x, config, progress=lambda done, total: ticks.append((done, total)))
    assert_live(ticks)
    assert ticks[-1] == (50, 50)  # both fits' epochs, one tick each
    assert len({d for d, _ in ticks}) == 51
    unwatched = imgcluster.reduce(x, config)
    assert np.array_equal(watched.space, unwatched.space) and np.array_equal(watched.map, unwatched.map)


def test_reduce_without_umap_reports_its_steps() -> None:
    ticks: list[tuple[int, int]] = []
    imgcluster.reduce(unit_vectors(60), imgcluster.ReduceConfig(method="none", map_method="pca"),
                      progress=lambda done, total: ticks.append((done, total)))
    assert ticks[0] == (0, 2) and ticks[-1] == (2, 2) and (1, 2) in ticks


def test_auto_mode_reports_each_candidate_and_keeps_its_answer() -> None:
    x, _ = make_blobs(n_samples=[90, 45, 25], n_features=5, cluster_std=0.5, random_state=3)
    ticks: list[tuple[int, int]] = []
    watched = AutoClusterer(seed=0).fit(x, progress=lambda done, total: ticks.append((done, total)))
    assert_live(ticks)
    assert ticks[-1][1] == len(watched.table_) + 1  # every candidate scored, then the final fit
    assert [d for d, _ in ticks] == list(range(len(watched.table_) + 2))
    assert np.array_equal(watched.labels_, AutoClusterer(seed=0).fit(x).labels_)


def test_a_run_reports_every_stage_with_intermediate_steps(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_photos(folder, 36)
    config = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(n_epochs=30, map_n_epochs=20),
                                  cluster=imgcluster.ClusterConfig(method="kmeans", k=4))
    stages: dict[str, list[tuple[int, int]]] = defaultdict(list)
    run = imgcluster.cluster(folder, workspace=tmp_path / "ws", model="efficientnet-lite0", config=config,
                             progress=lambda stage, done, total: stages[stage].append((done, total)))
    assert list(stages) == ["scan", "embed", "reduce", "cluster", "name", "report"]
    for stage in ("reduce", "name", "report"):
        assert_live(stages[stage])
    assert stages["name"][-1] == (run.record.n_clusters, run.record.n_clusters)  # clusters named n/N
    assert stages["cluster"] == [(0, 1), (1, 1)]  # k-means given k: one step


def test_numba_compiling_is_true_only_while_numba_compiles() -> None:
    import numba

    @numba.njit
    def total(values: np.ndarray) -> float:
        return float(values.sum())

    assert not numba_compiling(linger=0)  # watching starts here; nothing compiles yet
    seen: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(numba_compiling(linger=0))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        total(np.arange(5.0))
    finally:
        stop.set()
        watcher.join()
    assert any(seen)
    assert not numba_compiling(linger=0)
    assert numba_compiling(linger=60)  # a display lingers over the gaps between compilations


def test_a_tsne_map_reports_its_iterations_and_the_same_seed_gives_the_same_map() -> None:
    x = unit_vectors(80)
    config = imgcluster.ReduceConfig(method="pca", map_method="tsne")
    ticks: list[tuple[int, int]] = []
    watched = imgcluster.reduce(x, config, progress=lambda done, total: ticks.append((done, total)))
    assert_live(ticks)
    assert len({d for d, _ in ticks}) > 10  # every 25 of the 750 iterations
    assert np.array_equal(watched.map, imgcluster.reduce(x, config).map)


def test_a_reducer_or_namer_without_a_progress_argument_still_works() -> None:
    """Extensions registered before stages reported progress take no ``progress``: they are called without it."""
    from imgcluster.api.steps import progress_for

    class OldReducer:
        def fit(self, x):  # noqa: ANN001, ANN202
            return self

    class NewReducer:
        def fit(self, x, progress=None):  # noqa: ANN001, ANN202
            return self

    class KeywordsReducer:
        def fit(self, x, **options):  # noqa: ANN001, ANN003, ANN202
            return self

    tick = object()
    assert progress_for(OldReducer().fit, tick) == {}
    assert progress_for(NewReducer().fit, tick) == {"progress": tick}
    assert progress_for(KeywordsReducer().fit, tick) == {"progress": tick}
