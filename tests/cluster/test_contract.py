"""Every registered clusterer and reducer keeps the same contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from imgcluster.cluster import CLUSTERERS, NOISE, make_clusterer
from imgcluster.errors import ConfigError, UnknownName
from imgcluster.reduce import REDUCERS, make_reducer

PARAMS = {"kmeans": {"k": 3}, "hdbscan": {}, "auto": {}, "agglomerative": {"k": 3}, "dbscan": {}, "optics": {},
          "spectral": {"k": 3}}
REDUCER_PARAMS = {"umap": {"n_components": 4}, "pca": {"n_components": 4}, "tsne": {"n_components": 2}, "none": {},
                  "standard": {}}


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


@pytest.mark.parametrize("name", ["kmeans", "agglomerative", "spectral"])
def test_clusterers_that_need_k_say_what_to_do(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} needs k, the number of clusters: pass --k N"):
        make_clusterer(name)


def test_agglomerative_cuts_at_a_distance_instead_of_k(blobs) -> None:
    x, y = blobs
    fitted = make_clusterer("agglomerative", distance_threshold=20.0).fit(x)
    assert adjusted_rand_score(y, fitted.labels_) > 0.95
    assert fitted.describe()["k"] == 3  # the number the cut produced
    with pytest.raises(ConfigError, match="ward linkage works on euclidean distances only"):
        make_clusterer("agglomerative", k=3, metric="cosine")


def test_agglomerative_on_many_points_merges_along_a_neighbour_graph() -> None:
    x, y = make_blobs(n_samples=6_000, centers=4, n_features=5, cluster_std=0.8, random_state=1)
    fitted = make_clusterer("agglomerative", k=4).fit(x)
    assert fitted.labels_.shape == (6_000,)
    assert fitted.describe()["connectivity"] == "15-nn graph"
    assert adjusted_rand_score(y, fitted.labels_) > 0.95


def test_dbscan_records_the_eps_it_chose(blobs) -> None:
    x, _ = blobs
    chosen = make_clusterer("dbscan").fit(x).describe()
    assert chosen["eps_source"] == "auto" and chosen["eps"] > 0
    given = make_clusterer("dbscan", eps=chosen["eps"]).fit(x)
    assert given.describe()["eps"] == chosen["eps"] and given.describe()["eps_source"] == "given"


def test_dbscan_probabilities_separate_core_border_and_noise(blobs) -> None:
    x, _ = blobs
    outlier = np.full((1, x.shape[1]), 1000.0, dtype=np.float32)
    fitted = make_clusterer("dbscan").fit(np.vstack([x, outlier]))
    assert fitted.labels_[-1] == NOISE and fitted.probabilities_[-1] == 0.0
    border = (fitted.labels_ != NOISE) & (fitted.probabilities_ < 1)
    assert border.any()
    assert ((fitted.probabilities_[border] > 0) & (fitted.probabilities_[border] < 1)).all()
    labels, probabilities = fitted.predict(outlier)
    assert labels.tolist() == [NOISE] and probabilities.tolist() == [0.0]


def test_tsne_refuses_a_clustering_space_it_cannot_embed() -> None:
    with pytest.raises(ConfigError, match="t-SNE embeds in 1 to 3 dimensions; got n_components=5"):
        make_reducer("tsne", n_components=5)


def test_tsne_places_new_points_next_to_their_twins(blobs) -> None:
    x, _ = blobs
    fitted = make_reducer("tsne", seed=0).fit(x)
    spread = np.ptp(fitted.embedding_, axis=0).max()
    assert np.abs(fitted.transform(x[:5] + 0.01) - fitted.embedding_[:5]).max() < 0.05 * spread


def test_tsne_caps_perplexity_on_tiny_inputs(blobs) -> None:
    x, _ = blobs
    fitted = make_reducer("tsne", perplexity=30, seed=0).fit(x[:12])
    assert fitted.perplexity_ < 12 / 3
    assert fitted.embedding_.shape == (12, 2)


@pytest.mark.parametrize("name", sorted(REDUCERS))
def test_every_reducer_keeps_the_contract(name: str, blobs) -> None:
    x, _ = blobs
    params = REDUCER_PARAMS[name]
    fitted = make_reducer(name, seed=0, **params).fit(x)
    width = params.get("n_components", x.shape[1])
    assert fitted.embedding_.shape == (len(x), width)
    assert fitted.transform(x[:5]).shape == (5, width)
    again = make_reducer(name, seed=0, **params).fit(x)
    assert np.allclose(fitted.embedding_, again.embedding_, atol=1e-4)


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(UnknownName, match="Choose one of: agglomerative, auto, dbscan, hdbscan, kmeans, optics, "
                                          "spectral"):
        make_clusterer("affinity")
    with pytest.raises(UnknownName, match="Choose one of: none, pca, standard, tsne, umap"):
        make_reducer("lda")


def test_standard_reducer_gives_every_dimension_unit_variance(blobs) -> None:
    x, _ = blobs
    scaled = make_reducer("standard").fit(x * np.arange(1, 9, dtype=np.float32))
    assert np.allclose(scaled.embedding_.std(axis=0), 1.0, atol=1e-3)
    assert np.allclose(scaled.embedding_.mean(axis=0), 0.0, atol=1e-3)


def test_kmeans_on_many_points_uses_faiss_and_finds_the_groups() -> None:
    from imgcluster.cluster.kmeans import FAISS_FROM

    x, y = make_blobs(n_samples=FAISS_FROM + 1000, centers=5, n_features=16, cluster_std=1.0, random_state=1)
    fitted = make_clusterer("kmeans", k=5, seed=0).fit(x.astype(np.float32))
    assert fitted.describe()["backend"] == "faiss"
    assert adjusted_rand_score(y, fitted.labels_) > 0.99
    labels, margins = fitted.predict(x[:100].astype(np.float32))
    assert (labels == fitted.labels_[:100]).all() and ((margins >= 0) & (margins <= 1)).all()


def test_kmeans_keeps_the_best_of_several_starts_where_they_are_cheap() -> None:
    from sklearn.cluster import KMeans

    from imgcluster.cluster.kmeans import restarts

    # 20 groups in a 5-d space: one k-means++ start lands in a worse optimum more often than not here.
    x, _ = make_blobs(n_samples=2_000, centers=20, n_features=5, cluster_std=1.5, random_state=1)
    fitted = make_clusterer("kmeans", k=20, seed=0).fit(x)
    inertia = float(((x - fitted.centroids_[fitted.labels_]) ** 2).sum())
    single_starts = [KMeans(20, n_init=1, random_state=seed).fit(x).inertia_ for seed in range(10)]
    assert fitted.describe()["restarts"] == 10
    assert inertia < np.median(single_starts)
    # Raw 1,280-d embeddings with k=100 (the gumgum preset): one start is already the expensive part.
    assert restarts(15_000, 1_280, 100) == 1


def test_hdbscan_max_cluster_size_splits_what_eom_merges() -> None:
    x, _ = make_blobs(n_samples=[100, 100, 100], centers=[[0, 0], [3, 0], [30, 0]], cluster_std=0.8, random_state=0)
    merged = make_clusterer("hdbscan", min_cluster_size=20).fit(x)
    capped = make_clusterer("hdbscan", min_cluster_size=20, max_cluster_size=150).fit(x)
    assert np.bincount(merged.labels_[merged.labels_ >= 0]).max() == 200  # the two near blobs as one
    assert np.bincount(capped.labels_[capped.labels_ >= 0]).max() <= 150
    assert len(set(capped.labels_) - {NOISE}) == 3


def _registries() -> list[tuple[str, dict[str, type], str]]:
    return [(name, CLUSTERERS, "clusterer") for name in sorted(CLUSTERERS)] + \
           [(name, REDUCERS, "reducer") for name in sorted(REDUCERS)]


@pytest.mark.parametrize("name,registry,kind", _registries())
def test_every_stage_declares_exactly_the_parameters_it_takes(name: str, registry: dict[str, type], kind: str) -> None:
    """The declaration is the signature: no ``**_`` swallows a setting the stage would ignore."""
    import inspect

    signature = inspect.signature(registry[name].__init__).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in signature.values())
    assert set(registry[name].parameters) == set(signature) - {"self"}


@pytest.mark.parametrize("name,registry,kind", _registries())
def test_every_stage_refuses_to_predict_before_fit_with_one_error(name: str, registry: dict[str, type],
                                                                   kind: str) -> None:
    from imgcluster.errors import NotFitted

    stage = (make_clusterer(name, **PARAMS[name]) if kind == "clusterer" else
             make_reducer(name, **REDUCER_PARAMS[name]))
    call = stage.predict if kind == "clusterer" else stage.transform
    with pytest.raises(NotFitted, match=f"{type(stage).__name__} is not fitted yet; call fit\\(\\) first"):
        call(np.zeros((3, 8), dtype=np.float32))


def test_the_predictor_refuses_to_file_before_fit() -> None:
    from imgcluster.cluster.predictor import Predictor
    from imgcluster.errors import NotFitted

    with pytest.raises(NotFitted, match="Predictor is not fitted yet"):
        Predictor().predict(np.zeros((2, 8), dtype=np.float32))


def test_a_parameter_a_stage_does_not_take_names_the_stages_that_do() -> None:
    with pytest.raises(ConfigError, match="^k applies to agglomerative, kmeans and spectral, not dbscan; drop k "):
        make_clusterer("dbscan", k=7)
    with pytest.raises(ConfigError, match="^n_neighbors applies to spectral, not kmeans"):
        make_clusterer("kmeans", k=3, n_neighbors=5)
    with pytest.raises(ConfigError, match="^n_neighbors applies to umap, not pca"):
        make_reducer("pca", n_neighbors=5)
    with pytest.raises(ConfigError, match="No method takes colour, hdbscan included"):
        make_clusterer("hdbscan", colour="red")
    with pytest.raises(ConfigError, match="hdbscan's cluster_selection_method must be one of eom, leaf; got 'best'"):
        make_clusterer("hdbscan", cluster_selection_method="best")
    with pytest.raises(ConfigError, match="kmeans's k must be a whole number from 1 or unset"):
        make_clusterer("kmeans", k=2.5)
