"""Synthetic 512-d unit vectors with known clusters, shared by the benchmarks.

``synthetic(n)`` returns them in memory; ``write_shards(n, folder)`` writes the very same vectors
(rounded to float16) as ``.npy`` shards without ever holding n x d of them, so 1M vectors need
about 100 MB of memory to write instead of ~8 GB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_BLOCK = 50_000  # rows drawn at a time: ~200 MB of float64 normals at 512-d


def synthetic(n: int, d: int = 512, clusters: int = 20, noise: float = 0.10, seed: int = 0):
    """Unit vectors: ``clusters`` groups with sizes falling geometrically (largest ~10x smallest)
    around random centres, plus a ``noise`` share of uniform background (label -1)."""
    rng, centres, truth = _layout(n, d, clusters, noise, seed)
    x = np.empty((n, d), dtype=np.float32)
    for start, block in _blocks(rng, centres, truth, d):
        x[start:start + len(block)] = block
    order = rng.permutation(n)
    return x[order], truth[order]


def _layout(n: int, d: int, clusters: int, noise: float, seed: int):
    """The generator, the cluster centres and the labels in generation order (clusters, then noise)."""
    rng = np.random.default_rng(seed)
    weights = 0.885 ** np.arange(clusters)
    sizes = np.floor(weights / weights.sum() * n * (1 - noise)).astype(int)
    centres = rng.normal(size=(clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.concatenate([np.full(size, c) for c, size in enumerate(sizes)] + [np.full(n - sizes.sum(), -1)])
    return rng, centres, truth


def _blocks(rng: np.random.Generator, centres: np.ndarray, truth: np.ndarray,
            d: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 unit rows) in generation order. numpy's Generator draws the same numbers
    in pieces as in one call, so the blocks do not change the vectors."""
    clustered = int((truth >= 0).sum())
    for start in range(0, clustered, _BLOCK):
        stop = min(start + _BLOCK, clustered)
        # Per-dimension spread 0.04 puts members at cosine ~0.65 from their centre: clear, not trivial.
        block = (centres[truth[start:stop]] + rng.normal(scale=0.04, size=(stop - start, d))).astype(np.float32)
        yield start, _unit(block)
    for start in range(clustered, len(truth), _BLOCK):
        stop = min(start + _BLOCK, len(truth))
        yield start, _unit(rng.normal(size=(stop - start, d)).astype(np.float32))


def _unit(block: np.ndarray) -> np.ndarray:
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    return block


def write_shards(n: int, folder: str | os.PathLike[str], shard_rows: int = 10_000, dtype: str = "float16",
                 d: int = 512, seed: int = 0, variant: str = "standard") -> tuple[list[Path], np.ndarray]:
    """``synthetic(n, d, seed=seed)`` (or ``long_tail(n, d, seed=seed)`` for ``variant="long-tail"``)
    as ``shard-00000.npy`` … of ``shard_rows`` rows each (``dtype`` on disk) and ``truth.npy``, in
    ``folder``; reused when a complete set (``meta.json``) is there.

    Returns the shard paths, in row order, and the labels (n,)."""
    folder = Path(folder)
    meta = {"n": n, "d": d, "seed": seed, "shard_rows": shard_rows, "dtype": dtype, "generator": "bench/synthetic.py"}
    if variant != "standard":
        meta["variant"] = variant
    marker = folder / "meta.json"
    shards = [folder / f"shard-{i:05d}.npy" for i in range(-(-n // shard_rows))]
    if marker.exists() and json.loads(marker.read_text()) == meta:
        return shards, np.load(folder / "truth.npy")
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    if variant == "long-tail":
        # long_tail draws its bridges per row, so it is generated whole (n x d float32 in this
        # process: 2 GiB at 1M) and only then cut into shards; the process that reads them does not
        # hold it.
        x, truth = long_tail(n, d, seed=seed)
        for i, path in enumerate(shards):
            np.save(path, x[i * shard_rows:(i + 1) * shard_rows].astype(dtype))
        del x
        np.save(folder / "truth.npy", truth)
        marker.write_text(json.dumps(meta))
        return shards, truth
    rng, centres, truth = _layout(n, d, 20, 0.10, seed)
    # Generation order first, on disk (the shuffle needs every row drawn before it), then shuffled
    # into shards a shard at a time.
    staging = folder / "generation-order.tmp"
    ordered = np.lib.format.open_memmap(staging, mode="w+", dtype=dtype, shape=(n, d))
    for start, block in _blocks(rng, centres, truth, d):
        ordered[start:start + len(block)] = block
    order = rng.permutation(n)
    for i, path in enumerate(shards):
        rows = order[i * shard_rows:(i + 1) * shard_rows]
        sorted_rows = np.sort(rows)
        part = ordered[sorted_rows][np.searchsorted(sorted_rows, rows)]
        np.save(path, part)
    del ordered
    staging.unlink()
    np.save(folder / "truth.npy", truth[order])
    marker.write_text(json.dumps(meta))
    return shards, truth[order]


def long_tail(n: int, d: int = 512, large: int = 20, small: int = 20, noise: float = 0.10,
              bridged: float = 0.15, seed: int = 0):
    """Unit vectors with a long tail: ``large`` clusters of falling sizes (as ``synthetic``) and
    ``small`` clusters of 0.1% to 0.5% of ``n`` each (evenly spread), a ``bridged`` share of every
    cluster's points pulled 10-45% of the way towards another cluster's centre (images between two
    themes), and a ``noise`` share of uniform background (label -1).

    Returns (x (n, d) float32, truth (n,)), truth numbering the large clusters first, largest first."""
    rng = np.random.default_rng(seed)
    small_sizes = np.round(np.linspace(0.001, 0.005, small) * n).astype(int)
    weights = 0.885 ** np.arange(large)
    large_sizes = np.floor(weights / weights.sum() * (n * (1 - noise) - small_sizes.sum())).astype(int)
    sizes = np.concatenate([large_sizes, small_sizes])
    centres = rng.normal(size=(len(sizes), d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.concatenate([np.full(size, c) for c, size in enumerate(sizes)] + [np.full(n - sizes.sum(), -1)])
    x = np.empty((n, d), dtype=np.float32)
    clustered = int(sizes.sum())
    for start in range(0, clustered, _BLOCK):
        stop = min(start + _BLOCK, clustered)
        own = truth[start:stop]
        anchor = centres[own]
        pulled = rng.random(stop - start) < bridged
        # Towards a different cluster: shift by 1..c-1 so a cluster is never pulled towards itself.
        other = (own + rng.integers(1, len(sizes), size=stop - start)) % len(sizes)
        pull = np.where(pulled, rng.uniform(0.10, 0.45, size=stop - start), 0.0)[:, None]
        anchor = anchor + pull * (centres[other] - anchor)
        x[start:stop] = _unit((anchor + rng.normal(scale=0.04, size=(stop - start, d))).astype(np.float32))
    for start in range(clustered, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        x[start:stop] = _unit(rng.normal(size=(stop - start, d)).astype(np.float32))
    order = rng.permutation(n)
    return x[order], truth[order]
