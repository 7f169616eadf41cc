"""Gateways with a response cache in front of ``echo`` experts (which count their calls), and a
deterministic bag-of-words embedding expert for semantic matching."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from aiohttp.test_utils import TestClient

from moe_core import Expert, ExpertCard, ExpertResult, Options, Tracker, hookimpl
from moe_core.events import ExpertCalled
from moe_core.models import ChatRequest

DIMENSIONS = 64


def bag_of_words(text: str) -> list[float]:
    """Word counts hashed into 64 buckets: texts sharing most words are close in cosine."""
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        bucket = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % DIMENSIONS
        vector[bucket] += 1.0
    return vector


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


class BagOfWordsOptions(Options):
    fail: bool = False


class BagOfWordsEmbedder(Expert):
    """An embedding expert (the ``embed`` protocol of ``POST /v1/embeddings``), counting calls."""

    options: BagOfWordsOptions

    def __init__(self, name: str, options: BagOfWordsOptions) -> None:
        super().__init__(name, options)
        self.embedded: list[str] = []

    def card(self) -> ExpertCard:
        return ExpertCard(capabilities=["embed"], enabled=False, cost_per_1k_input=1.0)

    async def generate(self, request: ChatRequest) -> ExpertResult:
        raise AssertionError("the embedder is never asked to chat")

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        if self.options.fail:
            raise RuntimeError("the embedder is down")
        self.embedded.extend(texts)
        return [bag_of_words(text) for text in texts], sum(len(t.split()) for t in texts)


class CallRecorder(Tracker):
    """Keeps every expert call event, as any tracker sees them."""

    observes = (ExpertCalled,)

    def __init__(self, name: str, options: Any) -> None:
        super().__init__(name, options)
        self.calls: list[ExpertCalled] = []

    async def observe(self, event: ExpertCalled) -> None:  # type: ignore[override]
        self.calls.append(event)


class _EmbedderPlugin:
    @hookimpl
    def moe_register_experts(self, register) -> None:
        register("bag-of-words", BagOfWordsEmbedder, options=BagOfWordsOptions)

    @hookimpl
    def moe_register_trackers(self, register) -> None:
        register("call-recorder", CallRecorder)


EMBEDDER = [("bag-of-words", _EmbedderPlugin())]
"""The embedding expert kind ``bag-of-words`` and the tracker kind ``call-recorder``."""


def cached(pool: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """A gateway config: the experts of ``pool``, by default echo experts ``a`` (chosen by the
    gate) and ``b``, and a response cache of ``a`` (``options`` override the cache's)."""
    cache = {"kind": "response-cache", "experts": ["a"], **options}
    card = {"supports_tools": True, "supports_json": True}
    return {
        "experts": pool
        or {"a": {"kind": "echo", "card": card}, "b": {"kind": "echo", "prefix": "b: "}},
        "trackers": {"cache": cache},
    }


def ask(text: str = "what is the capital of france", **extra: Any) -> dict[str, Any]:
    """A chat body that is not sampled (temperature 0) unless ``extra`` says otherwise."""
    return {"messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


async def chat(client: TestClient, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


def answer(body: dict[str, Any]) -> str:
    return body["choices"][0]["message"]["content"]


def notes(body: dict[str, Any]) -> list[str]:
    return body["moe_metadata"]["notes"]


def calls(client: TestClient, expert: str = "a") -> int:
    """How many times the expert really answered (cache hits do not call it)."""
    from moe_core import MOE_KEY

    return client.server.app[MOE_KEY].experts[expert].expert.calls


def sse_chunks(text: str) -> list[dict[str, Any]]:
    """The JSON chunks of a server-sent event stream, which must end with ``[DONE]``."""
    payloads = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert payloads and payloads[-1] == "[DONE]", text
    return [json.loads(payload) for payload in payloads[:-1]]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
