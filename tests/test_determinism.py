"""A seeded run gives the same clusters whatever the thread counts and however busy the machine is."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

import imgcluster


def fit_with_threads(x: np.ndarray, threads: int) -> dict[str, np.ndarray]:
    """The default fit with every thread pool it can touch set to ``threads``: OpenMP (scikit-learn,
    faiss), BLAS and numba (UMAP). Set in this process, as OMP_NUM_THREADS and the like would at
    start-up, so the numba compilation (~30 s in a fresh process) is paid once."""
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            reduction, clustering = imgcluster.fit_clusters(x, imgcluster.ReduceConfig(seed=3))
    finally:
        numba.set_num_threads(before)
    return {"labels": clustering.labels, "probabilities": clustering.probabilities, "space": reduction.space,
            "map": reduction.map}


def test_a_seeded_fit_is_the_same_with_one_or_two_threads_and_under_load() -> None:
    # More than 256 points: scikit-learn's k-means splits its sums between threads in chunks of 256.
    x = load_digits().data[:400].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    one = fit_with_threads(x, 1)
    two = fit_with_threads(x, 2)
    # Two processes spinning on the (at most) two cores this runs on.
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = fit_with_threads(x, 2)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert len(set(one["labels"].tolist()) - {-1}) >= 5  # a real clustering, not one blob
    for name, other in (("two threads", two), ("two threads under load", loaded)):
        # Bit for bit: the same seed means the same clusters, probabilities, clustering space and map.
        for key in one:
            assert np.array_equal(other[key], one[key]), f"{key} differs with {name}"
