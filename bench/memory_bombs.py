"""How much memory do images just below the decompression-bomb limit cost?

Claim (issue 23): a PNG of a few hundred KB may declare 13,000 x 13,000 pixels, under Pillow's
bomb limit, so the scan accepts it; decoded it is half a GB, and the embedding threads decoding
several at once took `imgcluster embed` from 0.4 to 3 GB. With the decode budget (one such image in
flight at a time) and large images shrunk right after decoding, the peak stays near one image's
size. This prints the peak RSS of `imgcluster embed` over a folder of ordinary photos alone, and
with N such PNGs added.

    python bench/memory_bombs.py [--bombs 4] [--side 13000] [--mode RGB]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash import child_env, write_images

MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """The command's peak resident memory (MiB) and its wall time (s), run in a child of a child."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], check=True, capture_output=True, text=True,
                         env=child_env())
    return int(out.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - started


def embed(folder: Path, workspace: Path) -> list[str]:
    return [sys.executable, "-m", "imgcluster.cli", "embed", str(folder), "--workspace", str(workspace),
            "--model", "efficientnet-lite0", "--workers", "4", "--json"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bombs", type=int, default=4)
    parser.add_argument("--side", type=int, default=13_000)
    parser.add_argument("--mode", default="RGB", choices=["RGB", "L"], help="the PNGs' colour mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain, bombs = root / "plain", root / "with-bombs"
        write_images(plain, 40)
        write_images(bombs, 40)
        canvas = Image.new(args.mode, (args.side, args.side), 40 if args.mode == "L" else (40, 90, 160))
        canvas.paste(255 if args.mode == "L" else (250, 200, 30), (args.side // 4, args.side // 4, args.side // 2, args.side // 2))
        for i in range(args.bombs):
            canvas.save(bombs / f"huge-{i}.png", optimize=False)
        size_kb = (bombs / "huge-0.png").stat().st_size / 1024
        base, base_s = peak_rss_mib(embed(plain, root / "ws-plain"))
        with_bombs, bombs_s = peak_rss_mib(embed(bombs, root / "ws-bombs"))
    print(f"imgcluster embed, 40 photos:                     peak RSS {base:7.0f} MiB ({base_s:.0f} s)")
    print(f"imgcluster embed, 40 photos + {args.bombs} {args.mode} PNGs of {args.side:,}² "
          f"({size_kb:.0f} KB each): peak RSS {with_bombs:7.0f} MiB ({bombs_s:.0f} s); "
          f"+{with_bombs - base:.0f} MiB")
    print(f"command: python bench/memory_bombs.py --bombs {args.bombs} --side {args.side} --mode {args.mode}")


if __name__ == "__main__":
    main()
