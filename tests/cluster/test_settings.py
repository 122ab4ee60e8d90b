"""From a ClusterConfig to a clusterer: the method chosen, settings it does not take refused (or,
from a preset or a run stored before the check, left at their defaults), sizes scaled to a sample."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

import imgcluster
from imgcluster import ClusterConfig, ConfigError, ReduceConfig, RunConfig
from imgcluster.cluster import settle
from imgcluster.cluster.settings import collection_min_cluster_size, in_collection, sized_for_sample
from imgcluster.config import apply_preset


def test_a_setting_the_method_does_not_take_is_refused_with_the_methods_it_applies_to() -> None:
    with pytest.raises(ConfigError, match="^k applies to agglomerative, kmeans and spectral, not dbscan; drop --k "
                                          "or pick one of those methods.$"):
        settle(ClusterConfig(method="dbscan", k=7))
    with pytest.raises(ConfigError, match="^min_samples applies to dbscan, hdbscan and optics, not auto"):
        settle(ClusterConfig(min_samples=5))
    with pytest.raises(ConfigError, match="^alpha applies to auto and hdbscan, not kmeans"):
        settle(ClusterConfig(method="kmeans", k=3, alpha=2.0))


def test_a_size_given_without_a_method_picks_the_method_that_takes_it() -> None:
    assert settle(ClusterConfig(k=7)).method == "kmeans"
    assert settle(ClusterConfig(min_cluster_size=20)).method == "hdbscan"
    assert settle(ClusterConfig()).method == "auto"
    # Settings every method shares (seed, noise, held_quantile) never stand in the way.
    assert settle(ClusterConfig(method="dbscan", seed=3, noise="attach", held_quantile=0.1)).seed == 3


def test_a_presets_settings_for_another_method_are_left_at_their_defaults() -> None:
    """--preset ifunny --k 50: the user's k runs k-means; the preset's HDBSCAN sizes are not claimed."""
    config = apply_preset(RunConfig(), "ifunny")
    settled = settle(dataclasses.replace(config.cluster, k=50), "ifunny")
    assert (settled.method, settled.k) == ("kmeans", 50)
    assert (settled.min_cluster_size, settled.alpha, settled.cluster_selection_method) == (None, 1.0, "eom")
    assert settle(config.cluster, "ifunny") == config.cluster  # the preset alone keeps all it sets
    # A size of the user's own under a preset's k-means is theirs to fix, not silently dropped.
    gumgum = apply_preset(RunConfig(), "gumgum").cluster
    with pytest.raises(ConfigError, match="min_cluster_size applies to hdbscan and optics, not kmeans"):
        settle(dataclasses.replace(gumgum, min_cluster_size=50), "gumgum")


OLD_RUN_JSON = """{"scan": {"min_side": 8, "max_pixels": 178956970},
 "embed": {"model": "efficientnet-lite0", "batch_size": null, "device": "auto", "commit_every": 256, "workers": 2},
 "reduce": {"method": "umap", "n_components": 5, "n_neighbors": null, "min_dist": 0.0, "n_epochs": null,
            "metric": "cosine", "map_method": "umap", "map_min_dist": 0.1, "map_n_epochs": 100, "seed": 0,
            "fit_sample": 15000},
 "cluster": {"method": "dbscan", "k": 7, "min_cluster_size": 12, "max_cluster_size": null, "min_samples": 5,
             "cluster_selection_method": "eom", "alpha": 1.0, "seed": 0, "noise": "keep",
             "attach_threshold": 0.5},
 "preset": null, "name": {"namer": "auto", "images_per_cluster": 8}}"""


def test_a_run_stored_with_settings_its_method_ignored_still_loads_and_replays() -> None:
    """Runs stored before settings were checked against the method kept every field of the union."""
    config = RunConfig.from_dict(json.loads(OLD_RUN_JSON))
    assert (config.cluster.method, config.cluster.k) == ("dbscan", 7)  # loads as it was stored
    with pytest.raises(ConfigError, match="k applies to"):
        settle(config.cluster)  # a new run asking for this is refused …
    replayed = settle(config.cluster, config.preset, lenient=True)  # … a stored one drops what was ignored
    assert (replayed.method, replayed.k, replayed.min_cluster_size, replayed.min_samples) == ("dbscan", None, None, 5)
    x, _ = make_blobs(n_samples=60, centers=3, n_features=5, cluster_std=0.3, random_state=0)
    _, clustering = imgcluster.fit_clusters(x.astype(np.float32), ReduceConfig(method="none", map_method="pca"),
                                            replayed)
    assert clustering.params["method"] == "dbscan" and len(set(clustering.labels.tolist()) - {-1}) == 3


def test_sizes_given_for_the_collection_are_scaled_to_the_sample_and_back() -> None:
    config = ClusterConfig(min_cluster_size=100, max_cluster_size=1000)
    sampled = sized_for_sample(config, 1_000, 10_000)
    assert (sampled.min_cluster_size, sampled.max_cluster_size) == (10, 100)
    assert sized_for_sample(config, 10_000, 10_000) is config
    assert sized_for_sample(ClusterConfig(min_cluster_size=3), 10, 10_000).min_cluster_size == 2  # never below 2
    back = in_collection({"method": "hdbscan", "min_cluster_size": 10, "max_cluster_size": None}, 1_000, 10_000)
    assert (back["min_cluster_size"], back["min_cluster_size_in_sample"]) == (100, 10)
    assert "max_cluster_size_in_sample" not in back
    assert collection_min_cluster_size(None, 2_000, 0) == 20  # k-means: about 1%
    assert collection_min_cluster_size(10, 2_000, 500) == 40


def test_a_fit_on_a_sample_reports_sizes_at_the_collections_scale() -> None:
    x, _ = make_blobs(n_samples=1_200, centers=3, n_features=8, cluster_std=0.5, random_state=1)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    _, clustering = imgcluster.fit_clusters(x, ReduceConfig(method="pca", map_method="pca", fit_sample=400),
                                            ClusterConfig(min_cluster_size=60))
    assert clustering.params["min_cluster_size"] == 60 and clustering.params["min_cluster_size_in_sample"] == 20


def test_an_update_asks_new_clusters_for_the_size_the_fit_asked_once() -> None:
    from imgcluster.run.filing import min_cluster_size

    # A fit on 15,000 of 150,000 images stores its size at the collection's scale, the sample's beside:
    # an update's proposals must reach that size, not ten times it.
    sampled = imgcluster.RunRecord("r", 0.0, "/x", "m", "m", 150_000, 3, {"reduce": {"fit_sample": 15_000}},
                                   clustering={"min_cluster_size": 200, "min_cluster_size_in_sample": 20})
    assert min_cluster_size(sampled) == 200
    # A run stored without the sample's size (older, or fitted on everything) is scaled as before.
    whole = imgcluster.RunRecord("w", 0.0, "/x", "m", "m", 2_000, 3, {"reduce": {"fit_sample": 15_000}},
                                 clustering={"min_cluster_size": 20})
    assert min_cluster_size(whole) == 20
