"""When an upstream hangs, is saturated, rate limits or drops: the ``openai`` expert's timeouts,
its connection-pool wait, the breaker's Retry-After cooldown, and what the caller is told."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import user

BREAKER = {"kind": "circuit-breaker", "failure_threshold": 1, "reset_timeout_s": 60}


def primary_and_backup(base_url: str, *, trackers: dict | None = None, **options) -> dict:
    return {
        "experts": {
            "primary": {
                "kind": "openai",
                "base_url": base_url,
                "fallbacks": ["backup"],
                **options,
            },
            "backup": {"kind": "echo", "prefix": "backup: "},
        },
        "gate": {"kind": "fixed", "expert": "primary"},
        "trackers": trackers or {},
        "tracking": {"store": "memory"},  # nothing outlives the test
    }


async def test_a_hung_upstream_fails_over_once_the_first_byte_is_late(gateway, fake_upstream):
    fake, base_url = fake_upstream
    fake.behaviour.delay_s = 5  # accepts the call, then sends nothing
    client = await gateway(primary_and_backup(base_url, first_byte_timeout_s=0.3))
    for stream in (False, True):
        started = time.monotonic()
        response = await client.post("/v1/chat/completions", json=user("hi", stream=stream))
        text = await response.text()
        assert response.status == 200 and '"backup:' in text
        assert time.monotonic() - started < 2
        assert "did not start answering within 0.3 s (first_byte_timeout_s)" in text


async def test_a_slow_whole_answer_within_the_first_byte_timeout_is_not_cut_off(
    gateway, fake_upstream
):
    # A long non-streamed generation sends nothing until it is done: the (short) silence limit
    # between chunks must not apply before the answer starts.
    fake, base_url = fake_upstream
    fake.behaviour.delay_s = 0.6
    config = primary_and_backup(base_url, first_byte_timeout_s=5, read_timeout_s=0.2)
    client = await gateway(config)
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert (await response.json())["choices"][0]["message"]["content"] == "echo: hi"


async def test_a_stream_that_stalls_midway_is_an_error_event_naming_what_happened(
    gateway, fake_upstream
):
    fake, base_url = fake_upstream
    fake.behaviour.reply = "a b c"
    fake.behaviour.chunk_delay_s = 2
    experts = {"remote": {"kind": "openai", "base_url": base_url, "read_timeout_s": 0.3}}
    client = await gateway({"experts": experts})
    response = await client.post("/v1/chat/completions", json=user("x", stream=True))
    text = await response.text()
    assert '"content":"a"' in text and "[DONE]" not in text
    assert "went silent for 0.3 s in the middle of its answer (read_timeout_s)" in text


async def test_waiting_for_a_pooled_connection_is_not_part_of_timeout_s(gateway, fake_upstream):
    # Three calls at once through one connection, each taking 0.4 s: the last waits 0.8 s for
    # the connection, longer than timeout_s, and must still be answered, not timed out.
    fake, base_url = fake_upstream
    fake.behaviour.delay_s = 0.4
    config = primary_and_backup(
        base_url, max_connections=1, timeout_s=0.7, trackers={"breaker": BREAKER}
    )
    client = await gateway(config)
    calls = [client.post("/v1/chat/completions", json=user(str(n))) for n in range(3)]
    bodies = [await response.json() for response in await asyncio.gather(*calls)]
    answers = sorted(body["choices"][0]["message"]["content"] for body in bodies)
    assert answers == ["echo: 0", "echo: 1", "echo: 2"]
    assert len(fake.requests) == 3


async def test_a_burst_beyond_the_pool_is_refused_without_upstream_calls_or_an_open_breaker(
    gateway, fake_upstream
):
    fake, base_url = fake_upstream
    fake.behaviour.delay_s = 0.6
    config = primary_and_backup(
        base_url, max_connections=1, pool_timeout_s=0.2, trackers={"breaker": BREAKER}
    )
    client = await gateway(config)
    calls = [client.post("/v1/chat/completions", json=user(str(n))) for n in range(3)]
    bodies = [await response.json() for response in await asyncio.gather(*calls)]
    contents = sorted(body["choices"][0]["message"]["content"] for body in bodies)
    assert sum(content.startswith("echo: ") for content in contents) == 1
    assert sum(content.startswith("backup: ") for content in contents) == 2
    assert len(fake.requests) == 1, "a call refused by the pool never reaches the upstream"
    refused = [body for body in bodies if body["moe_metadata"]["fallbacks"]]
    assert (
        "is busy: all 1 connections to the upstream stayed busy for 0.2 s"
        in (refused[0]["moe_metadata"]["fallbacks"][0]["error"])
    )
    breakers = (await (await client.get("/v1/circuit-breakers")).json())["data"]
    assert breakers.get("primary", {"state": "closed"})["state"] == "closed"


@pytest.mark.parametrize(
    ("headers", "seconds"), [({"retry_after": "30"}, 30), ({"retry_after_ms": "1500"}, 2)]
)
async def test_retry_after_cools_the_expert_down_and_its_fallback_answers_at_once(
    gateway, fake_upstream, headers, seconds
):
    fake, base_url = fake_upstream
    fake.behaviour.status = 429
    for name, value in headers.items():
        setattr(fake.behaviour, name, value)
    client = await gateway(primary_and_backup(base_url, trackers={"breaker": BREAKER}))
    first = await (await client.post("/v1/chat/completions", json=user("one"))).json()
    assert first["choices"][0]["message"]["content"] == "backup: one"
    second = await (await client.post("/v1/chat/completions", json=user("two"))).json()
    assert second["choices"][0]["message"]["content"] == "backup: two"
    assert len(fake.requests) == 1, "a cooling-down expert is not called"
    assert "asked for a pause (Retry-After)" in second["moe_metadata"]["fallbacks"][0]["error"]
    status = (await (await client.get("/v1/circuit-breakers")).json())["data"]["primary"]
    assert status["state"] == "closed" and 0 < status["cooldown_s"] <= seconds


async def test_an_unreachable_upstream_is_named_by_its_expert_not_its_address(gateway):
    client = await gateway(
        {"experts": {"remote": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}}}
    )
    response = await client.post("/v1/chat/completions", json=user("x"))
    assert response.status == 503
    message = (await response.json())["error"]["message"]
    assert message == (
        "expert 'remote': cannot reach its upstream: cannot connect to the upstream: "
        "Connection refused"
    )


async def test_a_stream_dropped_midway_says_so(gateway, fake_upstream):
    fake, base_url = fake_upstream
    fake.behaviour.reply = "a b c d e"
    fake.behaviour.die_after_chunks = 2
    client = await gateway({"experts": {"remote": {"kind": "openai", "base_url": base_url}}})
    response = await client.post("/v1/chat/completions", json=user("x", stream=True))
    text = await response.text()
    assert "closed the connection midway through its answer after 3 chunks of a stream" in text
    assert "before answering" not in text and "127.0.0.1" not in text
