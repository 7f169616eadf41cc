"""`moe serve` with the embedded default (no config, no network) answers ``POST /v1/embeddings``
with ``model: auto``, as soon as its embedding expert is ready: a separate server process on
loopback, used by the official openai SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow
EMBEDDER = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "MOE_CONFIG"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moe_core.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    try:
        # Experts load in the background; the embedder needs none of the language models.
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"moe serve exited: {process.stderr.read()[-2000:]}")
            try:
                experts = httpx.get(f"{base}/health", timeout=2).json()["experts"]
                if experts[EMBEDDER]["state"] == "ready":
                    break
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"{EMBEDDER} did not become ready within 300 s")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_default_gateway_embeds_offline(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0)
    answer = client.embeddings.create(
        model="auto", input=["a cat sat on the mat", "a kitten rested on the rug", "tax return"]
    )
    assert answer.model == EMBEDDER and len(answer.data) == 3
    cat, kitten, tax = (item.embedding for item in answer.data)
    assert len(cat) == 384

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(cat, kitten) > cosine(cat, tax)
    assert EMBEDDER in [model.id for model in client.models.list()]
