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


def test_settings_are_merged_once_preset_first_then_what_was_given() -> None:
    from imgcluster.config import configure, overrides

    given = overrides({"reduce": {"seed": 7, "method": None}, "cluster": {"min_cluster_size": 3, "k": None}},
                      ["reduce.n_epochs=none", "cluster.min_samples=4"])
    assert given == {"reduce": {"seed": 7, "n_epochs": None}, "cluster": {"min_cluster_size": 3, "min_samples": 4}}
    config = configure(None, "ifunny", given)
    assert config.preset == "ifunny" and config.reduce.n_neighbors == 70  # the preset's, where nothing was given
    assert (config.reduce.seed, config.reduce.n_epochs) == (7, None)  # none unsets the preset's 300
    assert (config.cluster.min_cluster_size, config.cluster.min_samples) == (3, 4)
    with pytest.raises(ConfigError, match="cluster.k is given twice, by an option \\(3\\) and by --set \\(4\\)"):
        overrides({"cluster": {"k": 3}}, ["cluster.k=4"])
    with pytest.raises(ConfigError, match="dedup.hamming is a setting of --dedup; add --dedup"):
        configure(None, None, {"dedup": {"hamming": 4}})


def test_every_stage_setting_can_be_given_as_text() -> None:
    """--set STAGE.FIELD=VALUE reaches every field of every stage, read as the field's type."""
    import dataclasses

    from imgcluster.config import STAGES, parse_settings

    for stage, cls in STAGES.items():
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            text = ("none" if default is None else ",".join(default) if isinstance(default, tuple)
                    else str(default).lower() if isinstance(default, bool) else str(default))
            assert parse_settings([f"{stage}.{f.name}={text}"]) == {stage: {f.name: default}}, f"{stage}.{f.name}"
    for pair, match in [("cluster.k=many", "ClusterConfig.k must be a whole number or none; got 'many'"),
                        ("cluster.colour=red", "ClusterConfig has no setting 'colour'. Choose one of: method, k"),
                        ("clusters.k=3", "No stage called 'clusters'"),
                        ("k=3", "Give --set STAGE.FIELD=VALUE"),
                        ("scan.follow_symlinks=maybe", "ScanConfig.follow_symlinks must be true or false")]:
        with pytest.raises((ConfigError, UnknownName), match=match):
            parse_settings([pair])
