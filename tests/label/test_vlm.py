"""The VLM namer against a fake OpenAI-compatible server on 127.0.0.1: request format, caching,
rate limiting, and failures that leave the run and its other names intact."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

import imgcluster
from imgcluster.label import ClusterView, VlmEndpoint, VlmNamer
from imgcluster.label.vlm import PROMPT


class FakeVlm:
    """Records every request; answers with ``reply`` (a name) or fails with ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.reply, self.status = "handwritten digits", 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if fake.status != 200:
                    payload = json.dumps({"error": {"message": "model overloaded"}}).encode()
                else:
                    payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                                   "content": f'"{fake.reply}."\n'}}]}).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def fake_vlm() -> Iterator[FakeVlm]:
    fake = FakeVlm()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def digits_copy(digits_run: imgcluster.Run, tmp_path: Path) -> Path:
    return Path(shutil.copytree(digits_run.workspace, tmp_path / "ws"))


def vlm_config(url: str, **extra: object) -> imgcluster.NameConfig:
    return imgcluster.NameConfig(namer="vlm", vlm_url=url, vlm_model="fake-vl", vlm_images=2, vlm_min_interval=0,
                                 **extra)  # type: ignore[arg-type]


def test_vlm_names_clusters_from_their_images_and_caches_the_answers(
        digits_run: imgcluster.Run, digits_copy: Path, fake_vlm: FakeVlm) -> None:
    first_two = [c.cluster for c in digits_run.clusters() if c.cluster != -1][:2]
    names = imgcluster.name_clusters(config=vlm_config(fake_vlm.url), clusters=first_two, workspace=digits_copy,
                                     api_key="sekret")
    assert [(n.cluster, n.name, n.source, n.error) for n in names] == [
        (c, "handwritten digits", "vlm", None) for c in first_two]
    assert len(fake_vlm.requests) == 2
    request = fake_vlm.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sekret"
    assert request["body"]["model"] == "fake-vl"
    (message,) = request["body"]["messages"]
    text, *images = message["content"]
    assert text == {"type": "text", "text": PROMPT} and "1 to 4 words" in text["text"]
    assert len(images) == 2 and all(part["type"] == "image_url" for part in images)
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).format == "JPEG"

    run = imgcluster.load_run(workspace=digits_copy)
    assert {c: run.names[c].source for c in first_two} == {c: "vlm" for c in first_two}  # the newest wins
    others = [c for c in run.names if c not in first_two]
    assert others and all(run.names[c].source == "imagenet" for c in others)  # untouched
    assert "handwritten digits" in run.outputs["report"].read_text()

    imgcluster.name_clusters(config=vlm_config(fake_vlm.url), clusters=first_two, workspace=digits_copy)
    assert len(fake_vlm.requests) == 2  # answered from the workspace cache: no new request


def test_an_api_error_is_recorded_and_leaves_the_run_usable(
        digits_run: imgcluster.Run, digits_copy: Path, fake_vlm: FakeVlm) -> None:
    clusters = [c.cluster for c in digits_run.clusters() if c.cluster != -1]
    imgcluster.name_cluster(clusters[0], "zeros by hand", workspace=digits_copy)
    fake_vlm.status = 503
    names = imgcluster.name_clusters(config=vlm_config(fake_vlm.url), workspace=digits_copy)
    assert len(fake_vlm.requests) == 2  # gives up after two failures in a row, not one per cluster
    assert all(n.name == "" and n.error for n in names)
    assert "HTTP 503" in names[0].error and "model overloaded" in names[0].error
    assert "not asked" in names[-1].error
    run = imgcluster.load_run(workspace=digits_copy)
    assert run.names[clusters[0]].name == "zeros by hand"
    assert all(run.names[c].source == "imagenet" for c in clusters[1:])
    stored = [n for n in imgcluster.cluster_names(workspace=digits_copy) if n.source == "vlm"]
    assert len(stored) == len(clusters) and all(n.error for n in stored)
    assert imgcluster.report(workspace=digits_copy).exists()


def test_vlm_settings_come_from_the_environment_and_are_never_required(monkeypatch, digits_copy: Path) -> None:
    monkeypatch.delenv("IMGCLUSTER_VLM_URL", raising=False)
    monkeypatch.delenv("IMGCLUSTER_VLM_MODEL", raising=False)
    with pytest.raises(imgcluster.ConfigError, match="IMGCLUSTER_VLM_URL"):
        imgcluster.name_clusters(namer="vlm", workspace=digits_copy)
    monkeypatch.setenv("IMGCLUSTER_VLM_URL", "http://127.0.0.1:9/v1/chat/completions")
    monkeypatch.setenv("IMGCLUSTER_VLM_MODEL", "m")
    monkeypatch.setenv("IMGCLUSTER_VLM_KEY", "k")
    endpoint = VlmEndpoint.resolve()
    assert endpoint.url == "http://127.0.0.1:9/v1/chat/completions" and endpoint.api_key == "k"
    assert "k" not in repr(endpoint)


def test_requests_keep_the_minimum_interval(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32), "red").save(image)
    sent: list[float] = []

    def post(url: str, body: dict, headers: dict, timeout: float) -> dict:
        sent.append(time.monotonic())
        return {"choices": [{"message": {"content": "Name: red squares"}}]}

    namer = VlmNamer(VlmEndpoint("http://x/chat/completions", "m"), min_interval=0.15, post=post)
    views = [ClusterView(c, 1, [str(image)], [f"hash{c}"]) for c in range(3)]
    assert [n.name for n in namer.name(views)] == ["red squares"] * 3
    assert min(b - a for a, b in zip(sent, sent[1:])) >= 0.14
