"""Does any request the API's own OpenAPI schema allows make the web app fail with a 5xx?

Claim (issue 12): schemathesis, generating requests from ``/api/openapi.json`` (valid and invalid
parameters, bodies and uploads, stateful sequences through the schema's links), finds no server
error. The app serves a small real run (24 photos, efficientnet-lite0, k-means on PCA) in a
temporary workspace, on 127.0.0.1 with a token, so the auth layer is exercised too; edits
(rename, merge, move) happen for real on that copy.

    pip install schemathesis
    python bench/fuzz_api.py [--max-examples 50] [--seed 0]

Minutes on 2 cores: too slow for ``make test``; tests/web/test_security.py covers the hostile
requests that matter one by one.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash import write_images

import imgcluster
from imgcluster.web import create_app

TOKEN = "fuzz-token-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if st is None:
        raise SystemExit("schemathesis is not installed: pip install schemathesis")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        write_images(folder, 24)
        fast = imgcluster.RunConfig(reduce=imgcluster.ReduceConfig(method="pca", map_method="pca"))
        run = imgcluster.cluster(folder, model="efficientnet-lite0", method="kmeans", k=3, namer="none", config=fast)
        app = create_app(run.workspace, token=TOKEN, max_upload_mb=2)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        command = [st, "run", f"{url}/api/openapi.json", "--checks", "not_a_server_error",
                   "--header", f"Authorization: Bearer {TOKEN}", "--max-examples", str(args.max_examples),
                   "--seed", str(args.seed), "--request-timeout", "60", "--workers", "1"]
        started = time.perf_counter()
        result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=tmp)  # its cache stays there
        seconds = time.perf_counter() - started
        server.should_exit = True
        thread.join(10)
    print(result.stdout[-6000:])
    print(result.stderr[-2000:], file=sys.stderr)
    print(f"schemathesis exit status {result.returncode} ({'no server errors' if result.returncode == 0 else 'FAILURES'})"
          f" in {seconds:.0f} s")
    print(f"command: python bench/fuzz_api.py --max-examples {args.max_examples} --seed {args.seed}")
    raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
