"""A file rewritten between the scan and the embedding never poisons the embedding cache: the
vector stored under a content hash is always the embedding of the bytes that hash names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgcluster.embed import embed_records, load_model
from imgcluster.embed.runner import CHANGED_REASON, normalise
from imgcluster.scan import hash_file, load_rgb, scan
from imgcluster.store import Workspace

from ..conftest import photo, write_photos


def test_a_file_rewritten_after_the_scan_is_left_out_not_stored_under_its_old_hash(
        tmp_path: Path, tiny_clip_dir: Path) -> None:
    folder = tmp_path / "photos"
    paths = write_photos(folder, 6)
    twin = folder / "twin-of-2.jpg"
    twin.write_bytes(paths[2].read_bytes())  # same content, another file: it is read for the hash, or its twin
    embedder = load_model(str(tiny_clip_dir), device="cpu")
    with Workspace.open(tmp_path / "ws") as ws:
        found = scan(folder, ws)
        old_hash = next(r.content_hash for r in found.images if r.path == str(paths[2]))
        target = next(r.path for r in found.images if r.content_hash == old_hash)  # the one that will be read
        other = str(twin) if target == str(paths[2]) else str(paths[2])
        photo(99, kind=1).save(target, "JPEG")  # another picture while the scan's hash still says the old one
        report = embed_records(found.images, embedder, ws)

        assert report.changed == {old_hash} and old_hash not in report.undecodable
        assert old_hash not in ws.embedded_hashes(embedder.model_id)  # nothing stored under the old content
        [row] = ws.images([target])
        assert row.status == "skipped" and row.skip_reason == CHANGED_REASON
        [twin_row] = ws.images([other])  # unchanged, but without a vector this time: said so, truly
        assert twin_row.status == "skipped" and "another file with the same content" in twin_row.skip_reason

        again = scan(folder, ws)  # the next run reads the file as it is now
        [record] = [r for r in again.images if r.path == target]
        assert record.content_hash == hash_file(target) != old_hash
        assert other in {r.path for r in again.images}
        assert embed_records(again.images, embedder, ws).n_embedded == 2  # the new picture, and the twin's
        stored = ws.load_embeddings(embedder.model_id, [record.content_hash])
        fresh = normalise(embedder.embed(embedder.preprocess(load_rgb(target, min_side=embedder.input_size))[None]))
        assert np.allclose(stored, fresh, atol=2e-3)  # float16 storage
