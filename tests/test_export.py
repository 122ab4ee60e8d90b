"""Exports take a run's named clusters elsewhere and never touch the user's images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imgcluster


@pytest.fixture
def digits_copy(digits_run: imgcluster.Run, tmp_path: Path) -> Path:
    """A private copy of the digits run's workspace (the session's run must stay untouched)."""
    return Path(shutil.copytree(digits_run.workspace, tmp_path / "ws"))


def test_export_to_folders_links_every_image_and_never_touches_the_originals(
        digits_run: imgcluster.Run, digits_copy: Path, tmp_path: Path) -> None:
    originals = Path(digits_run.record.root)
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in originals.rglob("*") if p.is_file()}
    done = imgcluster.export(tmp_path / "out", workspace=digits_copy)
    assert done.linked == len(digits_run.images) and done.copied == 0
    links = [p for p in (tmp_path / "out").rglob("*") if p.is_symlink()]
    assert sorted(str(p.resolve()) for p in links) == sorted(r.path for r in digits_run.images)
    folders = {p.parent.name for p in links}
    named = {c: n.name for c, n in digits_run.names.items()}
    assert all(f == "unclustered" or f[:2].isdigit() for f in folders)
    first = digits_run.clusters()[0].cluster
    assert any(f.startswith(f"{first:02d}-") for f in folders) and named[first]
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in originals.rglob("*") if p.is_file()}
    assert after == before
    with pytest.raises(imgcluster.ConfigError, match="not an empty folder"):
        imgcluster.export(tmp_path / "out", workspace=digits_copy)
    copied = imgcluster.export(tmp_path / "copies", mode="copy", workspace=digits_copy)
    assert copied.copied == len(digits_run.images) and not any(p.is_symlink() for p in (tmp_path / "copies").rglob("*"))


def test_fiftyone_and_table_exports_carry_the_names(digits_run: imgcluster.Run, digits_copy: Path,
                                                    tmp_path: Path) -> None:
    imgcluster.export(tmp_path / "fo", to="fiftyone", workspace=digits_copy)
    data = json.loads((tmp_path / "fo" / "data.json").read_text())
    labels = json.loads((tmp_path / "fo" / "labels.json").read_text())
    assert sorted(data.values()) == sorted(r.path for r in digits_run.images)
    assert set(labels["labels"]) == set(data) and len(set(labels["classes"])) == len(labels["classes"])
    by_path = {r.path: int(c) for r, c in zip(digits_run.images, digits_run.assignments.clusters)}
    for sample, target in labels["labels"].items():
        cluster = by_path[data[sample]]
        if cluster == -1:
            assert target is None
        else:
            assert labels["classes"][target].startswith(digits_run.names[cluster].name)
    import pyarrow.parquet as pq

    imgcluster.export(tmp_path / "table.parquet", to="parquet", workspace=digits_copy)
    table = pq.read_table(tmp_path / "table.parquet").to_pydict()
    assert set(table) >= {"path", "cluster", "name", "membership_probability"}
    with pytest.raises(imgcluster.UnknownName, match="Choose one of: folders"):
        imgcluster.export(tmp_path / "x", to="zip", workspace=digits_copy)
