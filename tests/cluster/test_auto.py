"""Auto mode picks HDBSCAN settings itself and stores why."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import imgcluster
from imgcluster.cluster import AutoClusterer


def test_auto_finds_unequal_groups_without_k_and_explains_the_choice() -> None:
    x, y = make_blobs(n_samples=[400, 150, 60, 30], n_features=5, cluster_std=0.5, random_state=3)
    fitted = AutoClusterer(seed=0).fit(x)
    assert adjusted_rand_score(y, fitted.labels_) > 0.9
    described = fitted.describe()
    assert described["method"] == "auto"
    assert "highest silhouette" in described["auto"]["reason"]
    assert len(described["auto"]["table"]) >= 6
    assert {"min_cluster_size", "min_samples", "cluster_selection_method", "silhouette",
            "noise_fraction", "n_clusters"} <= set(described["auto"]["table"][0])


def test_auto_on_a_large_set_searches_on_a_sample(monkeypatch) -> None:
    import importlib

    # `imgcluster.cluster` is also the one-call function, so reach the module through importlib.
    monkeypatch.setattr(importlib.import_module("imgcluster.cluster.auto"), "SEARCH_SAMPLE", 300)
    x, y = make_blobs(n_samples=1200, centers=4, n_features=5, cluster_std=0.4, random_state=0)
    fitted = AutoClusterer(seed=0).fit(x)
    assert "searched on a sample of 300" in fitted.reason_
    assert fitted.labels_.shape == (1200,)
    assert adjusted_rand_score(y, fitted.labels_) > 0.9


def test_default_scores_like_kmeans_given_the_true_k(digits_dir, digits_run) -> None:
    """Quality on real images: with no k, the default matches k-means told the true number of digits."""
    from sklearn.cluster import KMeans

    from ..conftest import digit_labels

    labels = digit_labels(digits_dir)
    truth = [labels[r.path] for r in digits_run.images]
    ws = imgcluster.open_workspace(digits_dir / "images")
    vectors = ws.load_embeddings(digits_run.record.model_id, [r.content_hash for r in digits_run.images])
    ws.close()
    space = imgcluster.reduce(vectors).space  # the same seed gives the run's clustering space
    kmeans = KMeans(10, random_state=0, n_init="auto").fit_predict(space)
    default_nmi = normalized_mutual_info_score(truth, digits_run.assignments.clusters)
    kmeans_nmi = normalized_mutual_info_score(truth, kmeans)
    auto = imgcluster.cluster_points(space, imgcluster.ClusterConfig(method="auto"), embeddings=vectors)
    auto_nmi = normalized_mutual_info_score(truth, auto.labels)
    print(f"NMI default {default_nmi:.3f}, auto {auto_nmi:.3f}, k-means(k=10) {kmeans_nmi:.3f}")
    assert default_nmi >= kmeans_nmi - 0.02
    assert "embedding space" in auto.params["auto"]["reason"] and auto.params["min_cluster_size"] >= 2
