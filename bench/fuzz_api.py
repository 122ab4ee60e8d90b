"""Does any request the API's own OpenAPI schema allows make the web app fail with a 5xx?

Claim (issue 12): schemathesis, generating requests from ``/api/openapi.json`` (valid and invalid
parameters, bodies and uploads, stateful sequences through the schema's links), finds no server
error. The app serves a small real run (24 photos, efficientnet-lite0, k-means on PCA) in a
temporary workspace, on 127.0.0.1 with a token, so the auth layer is exercised too; edits
(rename, merge, move) happen for real on that copy.

Before schemathesis, two hostile rounds of our own (issue 23), over real HTTP: bodies holding
non-finite numbers (1e400, NaN, Infinity) and lone surrogates on every route that takes a body
(each must be a 422, never a 5xx), and a symlink-swap race: a thread swaps an image for a link to
a secret file and back while several threads request it (no answer may hold the secret's bytes;
none may be a 5xx). Loops are bounded in count and time; everything stays on 127.0.0.1.

    pip install schemathesis
    python bench/fuzz_api.py [--max-examples 50] [--race-requests 2000] [--seed 0] [--hostile-only]

Minutes on 2 cores: too slow for ``make test``; tests/web/test_security.py covers the hostile
requests that matter one by one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash import write_images

import imgcluster
from imgcluster.web import create_app

TOKEN = "fuzz-token-0123456789abcdef"


HOSTILE_VALUES = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", '"\\ud800"', '"\\udfff x"']
SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 40


def hostile_bodies(client: httpx.Client) -> tuple[int, int, dict[int, int]]:
    """Every body-taking route with each hostile value in each of its fields: (requests, 5xx, statuses)."""
    routes = [("POST", "/api/clusters/merge", ['{"clusters": [%s, 1]}', '{"clusters": [0, 1], "into": %s}',
                                               '{"clusters": [0, 1], "run": %s}']),
              ("POST", "/api/clusters/0/images", ['{"image_ids": [%s]}', '{"image_ids": [1], "run": %s}']),
              ("POST", "/api/clusters/proposals", ['{"accept": [%s]}', '{"reject": [%s]}', '{"run": %s}']),
              ("PUT", "/api/clusters/0/name", ['{"name": %s}'])]
    statuses: dict[int, int] = {}
    sent = errors = 0
    for method, url, templates in routes:
        for template in templates:
            for value in HOSTILE_VALUES:
                answer = client.request(method, url, content=template % value,
                                        headers={"content-type": "application/json"})
                sent += 1
                errors += answer.status_code >= 500
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    return sent, errors, statuses


def symlink_race(client_factory, image_id: int, path: Path, requests: int, seconds: float  # type: ignore[no-untyped-def]
                 ) -> tuple[int, int, int, int]:
    """Swap ``path`` between links to its own picture and to a secret while 4 threads request the
    image's file: (requests, answers holding the secret, 5xx, 200s)."""
    original = path.read_bytes()
    holder = path.parent / ".race"
    holder.mkdir()
    secret, kept = holder / "passwd", holder / "original"
    secret.write_bytes(SECRET)
    kept.write_bytes(original)
    path.unlink()
    stop = threading.Event()
    counts = {"sent": 0, "leaks": 0, "errors": 0, "ok": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def swap() -> None:
        link = path.with_name(path.name + ".link")
        while not stop.is_set():
            for target in (secret, kept):
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                os.symlink(target, link)
                os.replace(link, path)

    def ask() -> None:
        with client_factory() as client:
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    if counts["sent"] >= requests:
                        return
                    counts["sent"] += 1
                answer = client.get(f"/api/images/{image_id}/file")
                with lock:
                    counts["leaks"] += b"root:x" in answer.content
                    counts["errors"] += answer.status_code >= 500
                    counts["ok"] += answer.status_code == 200

    swapper = threading.Thread(target=swap)
    swapper.start()
    askers = [threading.Thread(target=ask) for _ in range(4)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    stop.set()
    swapper.join()
    path.unlink()
    path.write_bytes(original)
    shutil.rmtree(holder)
    return counts["sent"], counts["leaks"], counts["errors"], counts["ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=50)
    parser.add_argument("--race-requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hostile-only", action="store_true", help="only the two hostile rounds, not schemathesis")
    args = parser.parse_args()
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if st is None and not args.hostile_only:
        raise SystemExit("schemathesis is not installed: pip install schemathesis (or run with --hostile-only)")
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

        def client() -> httpx.Client:
            return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

        with client() as one:
            sent, errors, statuses = hostile_bodies(one)
        print(f"hostile bodies: {sent} requests (non-finite numbers, lone surrogates), {errors} x 5xx, statuses "
              f"{dict(sorted(statuses.items()))}  ->  {'PASS' if errors == 0 else 'FAIL'}")
        target = run.images[0]
        started = time.perf_counter()
        sent, leaks, errors, ok = symlink_race(client, target.id, Path(target.path), args.race_requests, 300)
        print(f"symlink-swap race: {sent} requests in {time.perf_counter() - started:.0f} s while a link swapped "
              f"between the image and a secret; {ok} served the image, {leaks} held the secret, {errors} x 5xx  ->  "
              f"{'PASS' if leaks == errors == 0 else 'FAIL'}")
        if args.hostile_only:
            server.should_exit = True
            thread.join(10)
            print(f"command: python bench/fuzz_api.py --hostile-only --race-requests {args.race_requests}")
            return
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
    print(f"command: python bench/fuzz_api.py --max-examples {args.max_examples} --race-requests "
          f"{args.race_requests} --seed {args.seed}")
    raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
