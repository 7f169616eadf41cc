"""Fixtures of the fault suites: a misbehaving upstream, the official SDK as the client, and the
answers and breaker states as a client sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.faults.upstream import FaultyUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[FaultyUpstream]:
    """A healthy fake OpenAI upstream on a fixed port, told to fail with ``await fail(...)``."""
    fake = FaultyUpstream()
    await fake.start()
    yield fake
    await fake.stop()


def sdk(client: TestClient) -> openai.AsyncOpenAI:
    """The official client, without its own retries: every failure must show."""
    return openai.AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0, timeout=20
    )


@dataclass
class Answer:
    content: str
    metadata: dict[str, Any]
    question: str = ""

    @property
    def failed_over_from(self) -> list[str]:
        """The experts that failed before the answer, as ``moe_metadata.fallbacks`` names them."""
        return [record["expert"] for record in self.metadata["fallbacks"]]

    def error_of(self, expert: str) -> str:
        return next(r["error"] for r in self.metadata["fallbacks"] if r["expert"] == expert)


async def ask(client: openai.AsyncOpenAI, text: str, *, stream: bool) -> Answer:
    """One chat request through the SDK, whole or streamed; its text and ``moe_metadata``."""
    messages = [{"role": "user", "content": text}]
    if not stream:
        completion = await client.chat.completions.create(model="auto", messages=messages)
        assert completion.model_extra is not None
        content = completion.choices[0].message.content or ""
        return Answer(content, completion.model_extra["moe_metadata"])
    chunks = [c async for c in await client.chat.completions.create(
        model="auto", messages=messages, stream=True
    )]  # fmt: skip
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    metadata = [c.model_extra["moe_metadata"] for c in chunks if "moe_metadata" in c.model_extra]
    assert metadata, "the stream's last chunk carries moe_metadata"
    return Answer(content, metadata[-1])


CLOSED = {"state": "closed", "consecutive_failures": 0, "cooldown_s": None}


async def breaker_of(client: TestClient, expert: str) -> dict[str, Any]:
    """``GET /v1/circuit-breakers`` for one expert (closed when it never failed)."""
    response = await client.get("/v1/circuit-breakers")
    assert response.status == 200
    return (await response.json())["data"].get(expert, CLOSED)
