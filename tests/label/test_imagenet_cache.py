"""Naming the same images again reads their class probabilities from the workspace: a re-cluster of
cached images needs neither the pictures nor the network, nor (in a fresh process) torch itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

RECLUSTER = """
import json, sys
import imgcluster
run = imgcluster.cluster(sys.argv[1], workspace=sys.argv[2], model="efficientnet-lite0")
print(json.dumps({"torch": "torch" in sys.modules, "device": run.record.model["device"],
                  "names": {str(c): n.name for c, n in run.names.items()}}))
"""


def test_a_fresh_recluster_of_cached_images_names_them_without_torch(digits_run, digits_dir: Path,
                                                                    tmp_path: Path) -> None:
    # A copy: the shared digits workspace must keep its one run for the tests that read it.
    workspace = shutil.copytree(digits_run.workspace, tmp_path / "ws", ignore=shutil.ignore_patterns("lock"))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", RECLUSTER, str(digits_dir / "images"), str(workspace)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads(done.stdout.strip().splitlines()[-1])
    assert again["torch"] is False, "a re-cluster of cached images imported torch"
    assert again["device"].startswith("not loaded")
    # Same images, same seed: the same clusters, named from the cached probabilities as before.
    assert again["names"] == {str(c): n.name for c, n in digits_run.names.items()}
