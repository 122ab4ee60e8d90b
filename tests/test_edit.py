"""Hand edits that split: a cluster into k parts, or chosen images off into a new cluster. Each is a
new run derived from the edited one, which stays as it was."""

from __future__ import annotations

import numpy as np
import pytest

import imgcluster


@pytest.fixture(scope="module")
def edit_run(digits_run: imgcluster.Run, tmp_path_factory: pytest.TempPathFactory) -> imgcluster.Run:
    """The digits run in a workspace of its own: edits add runs, the session's run must not see them."""
    import shutil
    from pathlib import Path

    folder = tmp_path_factory.mktemp("edit") / "workspace"
    shutil.copytree(Path(digits_run.workspace), folder, ignore=shutil.ignore_patterns("lock"))
    return imgcluster.load_run(digits_run.key, workspace=folder)


def test_split_cluster_divides_one_cluster_and_keeps_the_rest(edit_run: imgcluster.Run) -> None:
    labels = np.asarray(edit_run.assignments.clusters)
    top = int(np.bincount(labels[labels >= 0]).argmax())
    split = imgcluster.split_cluster(top, 2, edit_run.key, workspace=edit_run.workspace)
    again = imgcluster.split_cluster(top, 2, edit_run.key, workspace=edit_run.workspace)
    after = np.asarray(split.assignments.clusters)
    assert split.record.parent == edit_run.key and split.record.provenance.details["action"] == "split"
    assert np.array_equal(after[labels != top], labels[labels != top])
    parts = np.unique(after[labels == top])
    assert len(parts) == 2 and top in parts
    assert (after == top).sum() >= (after == parts[parts != top][0]).sum()  # the biggest part keeps the id
    assert np.array_equal(after, np.asarray(again.assignments.clusters))  # seeded: the same split again
    how = np.asarray(split.assignments.how_per_image())
    assert set(how[after == parts[parts != top][0]]) == {"split"}
    with pytest.raises(imgcluster.ConfigError, match="at least 2"):
        imgcluster.split_cluster(top, 1, edit_run.key, workspace=edit_run.workspace)
    with pytest.raises(imgcluster.ConfigError, match="cannot be split"):
        imgcluster.split_cluster(top, int((labels == top).sum()) + 1, edit_run.key, workspace=edit_run.workspace)


def test_split_off_makes_chosen_images_a_new_cluster(edit_run: imgcluster.Run) -> None:
    ids = np.asarray(edit_run.assignments.image_ids)
    labels = np.asarray(edit_run.assignments.clusters)
    chosen = ids[:7].tolist()
    split = imgcluster.split_off(chosen, edit_run.key, workspace=edit_run.workspace)
    after = np.asarray(split.assignments.clusters)
    new = int(labels.max()) + 1
    assert set(ids[after == new].tolist()) == set(chosen)
    assert np.array_equal(after[7:], labels[7:])
    assert split.record.n_clusters == len(set(after.tolist()) - {-1})
    with pytest.raises(imgcluster.ConfigError, match="no image with id"):
        imgcluster.split_off([10**9], edit_run.key, workspace=edit_run.workspace)


def test_a_cluster_emptied_by_an_edit_leaves_no_name_for_the_next_cluster_with_its_id(
        edit_run: imgcluster.Run) -> None:
    labels = np.asarray(edit_run.assignments.clusters)
    ids = np.asarray(edit_run.assignments.image_ids)
    top = int(np.bincount(labels[labels >= 0]).argmax())
    chosen = ids[labels == top][:20].tolist()
    off = imgcluster.split_off(chosen, edit_run.key, workspace=edit_run.workspace)
    new = int(np.asarray(off.assignments.clusters).max())
    imgcluster.name_cluster(new, "receipts", off.key, workspace=edit_run.workspace)
    back = imgcluster.move_images(chosen, top, off.key, workspace=edit_run.workspace)
    assert new not in set(np.asarray(back.assignments.clusters).tolist())
    assert new not in back.names  # emptied: its name went with it
    again = imgcluster.split_off(chosen[:10], back.key, workspace=edit_run.workspace)
    assert int(np.asarray(again.assignments.clusters).max()) == new  # the id is given again ...
    assert again.names.get(new) is None or again.names[new].name != "receipts"  # ... without the old name


def test_an_edit_keeps_the_automatic_names_of_the_clusters(edit_run: imgcluster.Run) -> None:
    # Nothing is named again after an edit: the clusters moved from or to keep what they were called.
    labels = np.asarray(edit_run.assignments.clusters)
    ids = np.asarray(edit_run.assignments.image_ids)
    present = sorted(set(labels.tolist()) - {-1})
    source, target = present[0], present[1]
    moved = imgcluster.move_images(ids[labels == source][:5].tolist(), target, edit_run.key,
                                   workspace=edit_run.workspace)
    assert edit_run.names and all(n.source != "manual" for n in edit_run.names.values())
    assert {c: (n.name, n.source, n.confidence) for c, n in moved.names.items()} == {
        c: (n.name, n.source, n.confidence) for c, n in edit_run.names.items()}
