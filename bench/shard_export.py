"""What does `--shards-to` cost: writing a workspace's embeddings as Parquet shards, reading them back,
and a re-run that finds everything already exported?

N synthetic L2-normalised D-dim vectors are committed to a fresh workspace in batches of 10,000 (as
`imgcluster embed` commits them, float16 .npy), then, for a local folder and for memory://:
- export: ``ShardExport(url).open(...).fill(workspace)``, the path taken for embeddings cached before
  the export began (10,000 rows a shard; a fresh embedding writes the same shards batch by batch);
- resume: open the URL again (reads every shard's content_hash column) and fill: nothing to write;
- read: ``imgcluster.read_exported_shards(url)``, checked equal to ``Workspace.load_embeddings``.
Prints seconds, rows/s and bytes on disk against the workspace's shards, and this command line.

    python bench/shard_export.py [--n 100000] [--dim 512]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

import imgcluster
from imgcluster.store import Workspace
from imgcluster.store.vector_export import ShardExport

BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model_id = "bench/synthetic"
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        ws.register_model(model_id, "synthetic", args.dim, {})
        hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.n)]
        paths = {h: f"/photos/{i:08d}.jpg" for i, h in enumerate(hashes)}
        for start in range(0, args.n, BATCH):
            x = rng.normal(size=(min(BATCH, args.n - start), args.dim)).astype(np.float32)
            ws.save_batch(model_id, hashes[start:start + BATCH], x / np.linalg.norm(x, axis=1, keepdims=True))
        npy_bytes = sum(p.stat().st_size for p in (Path(tmp) / "ws" / "vectors").rglob("*.npy"))
        for url in (str(Path(tmp) / "shards"), f"memory://bench-{uuid.uuid4().hex}"):
            started = time.perf_counter()
            written = ShardExport(url).open(model_id, args.dim, paths).fill(ws)
            export_s = time.perf_counter() - started
            started = time.perf_counter()
            again = ShardExport(url).open(model_id, args.dim, paths)
            rewritten = again.fill(ws)
            resume_s = time.perf_counter() - started
            started = time.perf_counter()
            back = imgcluster.read_exported_shards(url)
            read_s = time.perf_counter() - started
            order = np.argsort(back.content_hashes)
            same = np.array_equal(back.vectors[order], ws.load_embeddings(model_id, sorted(hashes)))
            size = sum(again.fs.size(name) for name in again.shards_)
            print(f"{url.split(':')[0] if '://' in url else 'folder'}: export {written:,} rows in "
                  f"{len(again.shards_)} shards {export_s:.2f} s ({written / export_s:,.0f} rows/s); resume "
                  f"(list + read hashes, {rewritten} rows written) {resume_s:.2f} s; read back {read_s:.2f} s "
                  f"({args.n / read_s:,.0f} rows/s), equal to the workspace: {same}; {size / 1e6:,.1f} MB "
                  f"vs {npy_bytes / 1e6:,.1f} MB of float16 .npy ({size / npy_bytes:.2f}x)")
        ws.close()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))


if __name__ == "__main__":
    main()
