"""The public API is what `__all__` says, and every name in it exists and is documented."""

from __future__ import annotations

import imgcluster


def test_all_names_exist_and_have_docstrings() -> None:
    for name in imgcluster.__all__:
        obj = getattr(imgcluster, name)
        if callable(obj):
            assert obj.__doc__, f"{name} needs a docstring"


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
