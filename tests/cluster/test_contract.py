"""Every registered clusterer and reducer keeps the same contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from imgcluster.cluster import CLUSTERERS, NOISE, make_clusterer
from imgcluster.errors import ConfigError, UnknownName
from imgcluster.reduce import REDUCERS, make_reducer

PARAMS = {"kmeans": {"k": 3}, "hdbscan": {}, "auto": {}}


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=90, centers=3, n_features=8, cluster_std=0.6, random_state=0)
    return x.astype(np.float32), y


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
def test_every_clusterer_keeps_the_contract(name: str, blobs) -> None:
    x, y = blobs
    first = make_clusterer(name, seed=0, **PARAMS[name]).fit(x)
    again = make_clusterer(name, seed=0, **PARAMS[name]).fit(x)
    assert first.labels_.shape == (len(x),)
    assert np.array_equal(first.labels_, again.labels_)  # same seed, same answer
    assert ((first.probabilities_ >= 0) & (first.probabilities_ <= 1)).all()
    assert adjusted_rand_score(y, first.labels_) > 0.95  # three clear groups are found
    labels, probabilities = first.predict(x[:10] + 0.01)
    assert np.array_equal(labels, first.labels_[:10])
    assert probabilities.shape == (10,)
    assert first.describe()["method"] == name


def test_hdbscan_marks_far_away_points_as_noise(blobs) -> None:
    x, _ = blobs
    outliers = np.full((3, x.shape[1]), 1000.0, dtype=np.float32) * np.arange(1, 4)[:, None]
    fitted = make_clusterer("hdbscan").fit(np.vstack([x, outliers]))
    assert (fitted.labels_[-3:] == NOISE).all()


def test_kmeans_without_k_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="pass --k N"):
        make_clusterer("kmeans")


@pytest.mark.parametrize("name", sorted(REDUCERS))
def test_every_reducer_keeps_the_contract(name: str, blobs) -> None:
    x, _ = blobs
    reducer = make_reducer(name, n_components=4, seed=0) if name != "none" else make_reducer(name)
    fitted = reducer.fit(x)
    width = x.shape[1] if name == "none" else 4
    assert fitted.embedding_.shape == (len(x), width)
    assert fitted.transform(x[:5]).shape == (5, width)
    again = (make_reducer(name, n_components=4, seed=0) if name != "none" else make_reducer(name)).fit(x)
    assert np.allclose(fitted.embedding_, again.embedding_, atol=1e-4)


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(UnknownName, match="Choose one of: auto, "):
        make_clusterer("affinity")
    with pytest.raises(UnknownName, match="Choose one of: none, pca, umap"):
        make_reducer("lda")
