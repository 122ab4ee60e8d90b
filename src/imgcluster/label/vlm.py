"""Names from a vision-language model behind an OpenAI-compatible chat completions API.

Never required and never used unless asked for (``--namer vlm``): it sends a few representative
images of every cluster to the endpoint. Answers are cached in the workspace by (model, prompt, the
images' content hashes), requests are spaced by a minimum interval, and a failure is recorded
against its cluster without touching any other name.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import NameConfig
from ..errors import ConfigError
from ..store import ClusterName, Workspace
from .base import ClusterView, NamingContext

log = logging.getLogger(__name__)

PROMPT = ("These images are typical members of one group in a collection of pictures. Name the group in 1 to 4 "
          "words, the way a person would label a folder of them (for example: cats, food photos, memes, receipts). "
          "Answer with the name only.")
IMAGE_SIDE = 384          # longer side of each image sent: enough to recognise, small to upload
FAILURES_BEFORE_GIVING_UP = 2

Post = Callable[[str, dict[str, Any], dict[str, str], float], dict[str, Any]]


@dataclass(frozen=True)
class VlmEndpoint:
    """Where the VLM answers: the chat completions URL, the model name, and an optional API key."""

    url: str
    model: str
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, url: str | None = None, model: str | None = None, api_key: str | None = None) -> "VlmEndpoint":
        """The given settings, else IMGCLUSTER_VLM_URL, IMGCLUSTER_VLM_MODEL and IMGCLUSTER_VLM_KEY."""
        url = url or os.environ.get("IMGCLUSTER_VLM_URL")
        model = model or os.environ.get("IMGCLUSTER_VLM_MODEL")
        if not url or not model:
            raise ConfigError("VLM naming needs an endpoint and a model: set IMGCLUSTER_VLM_URL (an OpenAI-compatible "
                              "API such as http://localhost:8000/v1) and IMGCLUSTER_VLM_MODEL, and IMGCLUSTER_VLM_KEY "
                              "if it needs a key, or pass --vlm-url and --vlm-model.")
        return cls(chat_completions_url(url), model, api_key or os.environ.get("IMGCLUSTER_VLM_KEY") or None)


def chat_completions_url(url: str) -> str:
    """Accept a base URL (…/v1) or the full …/chat/completions one."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def chat_request(model: str, prompt: str, images: Sequence[bytes]) -> dict[str, Any]:
    """The JSON body: one user message holding the prompt and each JPEG as an image_url data URI."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    parts += [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}}
              for jpeg in images]
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 20, "temperature": 0}


def clean_answer(text: str) -> str:
    """A usable name from a model's reply: first line, no quotes, labels or final punctuation, ≤ 60 chars."""
    line = next((part.strip() for part in text.strip().splitlines() if part.strip()), "")
    line = re.sub(r"^(name|group|label|answer)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip(" \t\"'`*.")
    return line[:60].strip()


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout: float) -> dict[str, Any]:
    """POST ``body`` as JSON and return the decoded JSON reply; HTTP errors raise with the server's words."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")[:200].strip()
        raise RuntimeError(f"HTTP {error.code} from {url}: {detail or error.reason}") from None
    except urllib.error.URLError as error:
        raise RuntimeError(f"cannot reach {url}: {error.reason}") from None


class VlmNamer:
    """Asks a VLM for a 1-4 word name per cluster from a few of its representative images."""

    source = "vlm"
    needs_embeddings = False

    def __init__(self, endpoint: VlmEndpoint, workspace: Workspace | None = None, images_per_cluster: int = 4,
                 min_interval: float = 1.0, timeout: float = 60.0, prompt: str = PROMPT, post: Post | None = None):
        self.endpoint, self.workspace, self.images_per_cluster = endpoint, workspace, images_per_cluster
        self.min_interval, self.timeout, self.prompt = min_interval, timeout, prompt
        self.post = post or post_json
        self._last_request = float("-inf")

    @classmethod
    def from_config(cls, config: NameConfig, context: NamingContext) -> "VlmNamer":
        endpoint = VlmEndpoint.resolve(config.vlm_url, config.vlm_model, context.api_key)
        return cls(endpoint, context.workspace, config.vlm_images, config.vlm_min_interval)

    def name(self, clusters: Sequence[ClusterView],
             progress: Callable[[int, int], None] | None = None) -> list[ClusterName]:
        names, failures = [], 0
        for done, view in enumerate(clusters):
            if progress is not None:
                progress(done, len(clusters))
            if failures >= FAILURES_BEFORE_GIVING_UP:
                names.append(ClusterName(view.cluster, "", self.source,
                                         error=f"not asked: the endpoint failed {failures} times in a row"))
                continue
            try:
                answer = self._answer(view)
            except Exception as error:  # network, HTTP and malformed replies alike: record, go on
                failures += 1
                log.warning("VLM naming of cluster %d failed: %s", view.cluster, error)
                names.append(ClusterName(view.cluster, "", self.source, error=str(error)[:300]))
                continue
            failures = 0
            names.append(ClusterName(view.cluster, answer, self.source, None, [(answer, None)]))
        if progress is not None:
            progress(len(clusters), len(clusters))
        return names

    def _answer(self, view: ClusterView) -> str:
        count = min(self.images_per_cluster, len(view.paths))
        key = self.cache_key(view.content_hashes[:count])
        cached = self.workspace.namer_answer(key) if self.workspace is not None else None
        if cached:
            return cached
        body = chat_request(self.endpoint.model, self.prompt, [_jpeg(view, i) for i in range(count)])
        reply = self._post(body)
        content = reply["choices"][0]["message"]["content"]
        if isinstance(content, list):  # some servers answer in parts, like the request
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        answer = clean_answer(str(content))
        if not answer:
            raise ValueError(f"the model answered {str(content)[:80]!r}, which holds no name")
        if self.workspace is not None:
            self.workspace.save_namer_answer(key, self.source, answer)
        return answer

    def cache_key(self, content_hashes: Sequence[str]) -> str:
        """What decides an answer: the model, the prompt and the images (by content)."""
        content = json.dumps([self.endpoint.model, self.prompt, list(content_hashes)])
        return "vlm:" + hashlib.blake2b(content.encode(), digest_size=16).hexdigest()

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        wait = self.min_interval - (time.monotonic() - self._last_request)
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()
        headers = {"Authorization": f"Bearer {self.endpoint.api_key}"} if self.endpoint.api_key else {}
        return self.post(self.endpoint.url, body, headers, self.timeout)


def _jpeg(view: ClusterView, i: int) -> bytes:
    image = view.image(i, min_side=IMAGE_SIDE)
    image.thumbnail((IMAGE_SIDE, IMAGE_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
