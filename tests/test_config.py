"""Settings are validated with messages that say what to do; presets are data."""

from __future__ import annotations

import pytest

from imgcluster import ClusterConfig, ConfigError, EmbedConfig, RunConfig, UnknownName
from imgcluster.config import apply_preset


def test_invalid_values_name_the_field_and_the_fix() -> None:
    with pytest.raises(ConfigError, match="min_cluster_size must be at least 2; got 1. Leave it unset"):
        ClusterConfig(min_cluster_size=1)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        EmbedConfig(batch_size=0)
    with pytest.raises(ConfigError, match="'eom' or 'leaf'"):
        ClusterConfig(cluster_selection_method="best")
    with pytest.raises(ConfigError, match="noise must be 'keep' or 'attach'"):
        ClusterConfig(noise="drop")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        ClusterConfig(attach_threshold=1.5)


def test_ifunny_preset_is_the_articles_recipe() -> None:
    config = apply_preset(RunConfig(), "ifunny")
    assert config.preset == "ifunny"
    reduce, cluster = config.reduce, config.cluster
    assert (reduce.n_neighbors, reduce.n_epochs, reduce.min_dist, reduce.n_components, reduce.seed) == (
        70, 300, 0.03, 5, 35)
    assert (cluster.min_cluster_size, cluster.alpha, cluster.cluster_selection_method) == (1000, 2.0, "leaf")


def test_gumgum_preset_is_the_articles_recipe() -> None:
    config = apply_preset(RunConfig(), "gumgum")
    assert (config.reduce.method, config.reduce.fit_sample) == ("standard", 0)
    assert (config.cluster.method, config.cluster.k) == ("kmeans", 100)


def test_config_round_trips_through_json_data() -> None:
    config = apply_preset(RunConfig(), "ifunny")
    assert RunConfig.from_dict(config.to_dict()) == config


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(UnknownName, match="Choose one of: default, gumgum, ifunny"):
        apply_preset(RunConfig(), "fiftyone")


def test_the_python_api_refuses_what_the_cli_refuses() -> None:
    from imgcluster import ReduceConfig

    for make, match in [(lambda: ReduceConfig(seed=-1), "seed must be a whole number from 0"),
                        (lambda: ClusterConfig(seed=2**32), "seed must be a whole number from 0"),
                        (lambda: EmbedConfig(device="gpu"), "No device called 'gpu'. Choose one of: auto, cpu"),
                        (lambda: EmbedConfig(device="cuda:first"), "No device called"),
                        (lambda: EmbedConfig(workers=17), "workers .* must be 1-16; got 17")]:
        with pytest.raises(ConfigError, match=match):
            make()
    assert EmbedConfig(device="cuda:1").device == "cuda:1"  # a name only: whether it is here is checked at work


def test_a_stored_run_with_more_decode_workers_than_the_range_still_loads() -> None:
    data = RunConfig().to_dict()
    data["embed"]["workers"] = 64  # allowed before the documented 1-16 was enforced
    assert RunConfig.from_dict(data).embed.workers == 16
