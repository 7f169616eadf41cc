"""Whose failure opens a circuit breaker: the provider's, never the caller's.

Against the fake OpenAI upstream, through the gateway's HTTP API: a client that sends prompts
over the context window or out-of-range parameters must not open a breaker for everyone, and a
model that fails must not take down another model of the same provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import user
from tests.plugins.moe_tracking.conftest import tracked

CONTEXT_LENGTH_EXCEEDED = {
    "error": {
        "message": "This model's maximum context length is 512 tokens. However, your messages "
        "resulted in 1002 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


@dataclass
class Upstream(FakeOpenAI):
    """The fake OpenAI server with a small context window, answered as OpenAI answers a prompt
    over it, and models that can be broken one at a time (``behaviour.status`` breaks all)."""

    context_chars: int = 2000
    broken_models: set[str] = field(default_factory=set)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["model"] in self.broken_models:
            self.requests.append(body)
            return self._error(500, "The server had an error while processing your request.")
        if sum(len(str(m.get("content"))) for m in body["messages"]) > self.context_chars:
            self.requests.append(body)
            return web.json_response(CONTEXT_LENGTH_EXCEEDED, status=400)
        return await super().chat_completions(request)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    fake = Upstream()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


def remote(base_url: str, **breaker: Any) -> dict:
    """One ``openai`` expert, ``remote``, behind a breaker with the default options."""
    experts = {"remote": {"kind": "openai", "base_url": base_url}}
    return tracked(experts, trackers={"breaker": {"kind": "circuit-breaker", **breaker}})


async def breakers(client) -> dict[str, Any]:
    return (await (await client.get("/v1/circuit-breakers")).json())["data"]


async def test_prompts_over_the_context_window_never_open_it_upstream_500s_do(gateway, upstream):
    fake, base_url = upstream
    client = await gateway(remote(base_url))
    too_long = "word " * 1000
    for stream in (False, True):
        for _ in range(5):
            response = await client.post("/v1/chat/completions", json=user(too_long, stream=stream))
            assert response.status == 400
            assert "maximum context length" in (await response.json())["error"]["message"]
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 200, "ten rejected prompts must not stop the next caller"
    assert (await response.json())["choices"][0]["message"]["content"] == "echo: hi"
    assert len(fake.requests) == 11

    fake.behaviour.status = 500
    for _ in range(5):
        response = await client.post("/v1/chat/completions", json=user("hi"))
        assert response.status == 502
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "circuit_open"
    assert len(fake.requests) == 16, "an open breaker keeps calls from the failing upstream"
    assert (await breakers(client))["remote"]["consecutive_failures"] == 5


async def test_a_probe_the_caller_got_wrong_leaves_the_next_call_to_probe(gateway, upstream):
    fake, base_url = upstream
    client = await gateway(remote(base_url, failure_threshold=1, reset_timeout_s=0.2))
    fake.behaviour.status = 500
    assert (await client.post("/v1/chat/completions", json=user("hi"))).status == 502
    fake.behaviour.status = None  # the provider has recovered
    await asyncio.sleep(0.25)  # half-open: the next call is the probe
    probe = await client.post("/v1/chat/completions", json=user("word " * 1000))
    assert probe.status == 400
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 200, await response.text()
    assert (await breakers(client))["remote"]["state"] == "closed"


@pytest.mark.parametrize("param", ["seed", "max_tokens", "max_completion_tokens"])
async def test_integers_out_of_range_are_a_400_naming_the_parameter(gateway, upstream, param):
    fake, base_url = upstream
    client = await gateway(remote(base_url, failure_threshold=1))
    for value in (2**100, -(2**100)):
        for stream in (False, True):
            body = user("hi", stream=stream, **{param: value})
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status == 400
            error = (await response.json())["error"]
            assert error["param"] == param and error["code"] == "invalid_value"
    assert fake.requests == []
    response = await client.post("/v1/chat/completions", json=user("hi", **{param: 2**31 - 1}))
    assert response.status == 200, "a request after them is answered: no breaker opened"
    assert fake.requests[-1][param] == 2**31 - 1
    assert all(state["state"] == "closed" for state in (await breakers(client)).values())


async def test_seeds_in_openais_64_bit_range_pass_through(gateway, upstream):
    fake, base_url = upstream
    client = await gateway(remote(base_url))
    for seed in (2**63 - 1, -(2**63)):
        response = await client.post("/v1/chat/completions", json=user("hi", seed=seed))
        assert response.status == 200
        assert fake.requests[-1]["seed"] == seed


async def test_a_failing_model_opens_only_its_own_breaker_not_its_fallbacks(gateway, upstream):
    fake, base_url = upstream
    fake.broken_models = {"gpt-4o"}
    experts = {
        "gpt-4o": {"kind": "openai", "base_url": base_url, "fallbacks": ["gpt-4o-mini"]},
        "gpt-4o-mini": {"kind": "openai", "base_url": base_url},
    }
    client = await gateway(tracked(experts, trackers={"breaker": {"kind": "circuit-breaker"}}))
    for _ in range(8):
        response = await client.post("/v1/chat/completions", json=user("hi", model="gpt-4o"))
        assert response.status == 200
        assert (await response.json())["model"] == "gpt-4o-mini"
    called = [request["model"] for request in fake.requests]
    # The fallback's successes in between must not hide the primary's five failures in a row.
    assert called.count("gpt-4o") == 5 and called.count("gpt-4o-mini") == 8
    status = await breakers(client)
    assert status["gpt-4o"]["state"] == "open"
    assert status.get("gpt-4o-mini", {"state": "closed"})["state"] == "closed"
    response = await client.post("/v1/chat/completions", json=user("hi", model="gpt-4o-mini"))
    assert response.status == 200
    assert (await response.json())["choices"][0]["message"]["content"] == "echo: hi"
