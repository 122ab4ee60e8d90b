"""The public API is what `__all__` says, and every name in it exists and is documented."""

from __future__ import annotations

import pytest

import imgcluster


def test_all_names_exist_and_have_docstrings() -> None:
    for name in imgcluster.__all__:
        obj = getattr(imgcluster, name)
        if callable(obj):
            assert obj.__doc__, f"{name} needs a docstring"


def test_all_is_sorted_complete_and_importable() -> None:
    import importlib

    assert imgcluster.__all__ == sorted(imgcluster.__all__), "keep __all__ sorted (sorted() order)"
    assert len(set(imgcluster.__all__)) == len(imgcluster.__all__)
    for name in imgcluster.__all__:
        exec(f"from imgcluster import {name}", {})  # every name imports the way a user writes it
    api = importlib.import_module("imgcluster.api")
    aliases = {"Progress", "StageProgress"}  # callback types (typing aliases carry no docstring)
    assert set(api.__all__) - aliases <= set(imgcluster.__all__), "every verb of imgcluster.api is public at the top"


def test_every_public_class_and_function_documents_itself() -> None:
    import inspect

    for name in imgcluster.__all__:
        obj = getattr(imgcluster, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            assert own and own.strip(), f"{name} needs a docstring of its own"


def test_names_that_moved_still_import() -> None:
    import warnings

    from imgcluster.api.living import ProposedCluster
    from imgcluster.api.steps import Run
    from imgcluster.represent import Representatives
    from imgcluster.runs import ClusterSummary, answer_warnings, compare_assignments

    assert (Run, ProposedCluster, Representatives, ClusterSummary) == (
        imgcluster.Run, imgcluster.ProposedCluster, imgcluster.Representatives, imgcluster.ClusterSummary)
    assert callable(answer_warnings) and callable(compare_assignments)
    record = imgcluster.RunRecord("r", 0.0, "/x", "m", "m", 1, 0, {}, {"metrics": {"n_clusters": 0}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert record.info["metrics"] == {"n_clusters": 0} == record.metrics  # the old dict still reads
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_a_run_record_from_the_old_dict_is_built_by_from_info_and_copies_quietly() -> None:
    import dataclasses
    import warnings

    old = {"metrics": {"n_clusters": 1}, "edit": {"parent": "p", "action": "merge", "clusters": [0, 1], "into": 0}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = imgcluster.RunRecord.from_info("r", 0.0, "/x", "m", "m", 1, 1, {}, old)
        copied = dataclasses.replace(record, key="s")
        by_keyword = imgcluster.RunRecord("r", 0.0, "/x", "m", "m", 1, 1, {}, metrics={"n_clusters": 1},
                                          provenance=record.provenance)
    assert caught == []  # neither building from the dict nor copying is a deprecated use
    assert (record.metrics, record.parent, record.provenance.how) == ({"n_clusters": 1}, "p", "edit")
    assert copied.key == "s" and dataclasses.replace(copied, key="r") == record  # every typed field copied
    assert by_keyword == record
    with pytest.warns(DeprecationWarning, match="from_info"):
        legacy = imgcluster.RunRecord("r", 0.0, "/x", "m", "m", 1, 1, {}, old)  # the old ninth argument
    with pytest.warns(DeprecationWarning, match="from_info"):
        assert imgcluster.RunRecord("r", 0.0, "/x", "m", "m", 1, 1, {}, info=old) == legacy
    assert legacy == record


def test_the_pipeline_steps_are_public() -> None:
    assert {"scan", "embed", "reduce", "cluster_points", "cluster", "report", "open_workspace"} <= set(
        imgcluster.__all__)


def test_step_by_step_scripting_matches_the_one_call(photos, tmp_path) -> None:
    ws = imgcluster.open_workspace(workspace=tmp_path / "ws")
    found = imgcluster.scan(photos, workspace=ws)
    embedded = imgcluster.embed(found, workspace=ws, config=imgcluster.EmbedConfig(model="efficientnet-lite0"))
    reduced = imgcluster.reduce(embedded.vectors)
    clustered = imgcluster.cluster_points(reduced.space, imgcluster.ClusterConfig(k=4))
    ws.close()
    run = imgcluster.cluster(photos, workspace=tmp_path / "ws", model="efficientnet-lite0", k=4)
    assert embedded.vectors.shape == (24, 1280)
    assert [r.path for r in embedded.images] == [r.path for r in run.images]
    assert (clustered.labels == run.assignments.clusters).all()
