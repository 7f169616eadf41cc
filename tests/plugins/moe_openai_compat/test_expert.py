"""The ``openai`` expert against a faithful fake upstream: passthrough, streaming, error mapping."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from orjson import dumps

from moe_core import ConfigError
from moe_core.testing import make_moe
from tests.conftest import streamed_content, user


def remote(base_url: str, **options) -> dict:
    return {"experts": {"remote": {"kind": "openai", "base_url": base_url, **options}}}


async def test_parameters_model_name_and_key_reach_the_upstream(
    gateway, fake_upstream, monkeypatch
):
    fake, base_url = fake_upstream
    fake.behaviour.api_key = "sk-upstream"
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream")
    client = await gateway(remote(base_url, model="big-model-v2", api_key_env="UPSTREAM_KEY"))
    response = await client.post(
        "/v1/chat/completions",
        json=user(
            "hi",
            temperature=0.3,
            top_p=0.9,
            max_tokens=50,
            stop=["\n"],
            seed=7,
            logit_bias={"42": -100},
            moe={"task_type": "chat"},
        ),
    )
    assert response.status == 200, await response.text()
    sent = fake.requests[-1]
    assert sent["model"] == "big-model-v2"
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9 and sent["max_tokens"] == 50
    assert sent["stop"] == ["\n"] and sent["seed"] == 7
    assert sent["logit_bias"] == {"42": -100}  # unknown OpenAI params pass through untouched
    assert "moe" not in sent  # routing hints stay in the gateway
    assert fake.headers[-1]["Authorization"] == "Bearer sk-upstream"
    body = await response.json()
    assert body["choices"][0]["message"]["content"] == "echo: hi"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


@pytest.mark.parametrize(
    ("reported", "read"),
    [
        # OpenAI's own shape, details and all.
        (
            {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6, "details": {"x": 1}},
            {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        ),
        # Servers that leave out the total, or send nulls.
        (
            {"prompt_tokens": 4, "completion_tokens": 2},
            {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        ),
        (
            {"prompt_tokens": None, "completion_tokens": 2, "total_tokens": None},
            {"prompt_tokens": 0, "completion_tokens": 2, "total_tokens": 2},
        ),
    ],
)
async def test_the_upstreams_usage_is_read_whatever_its_dialect(
    gateway, fake_upstream, reported, read
):
    fake, base_url = fake_upstream
    fake.behaviour.usage = reported
    client = await gateway(remote(base_url))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 200, await response.text()
    assert (await response.json())["usage"] == read


async def test_a_system_prompt_makes_a_remote_domain_expert(gateway, fake_upstream):
    fake, base_url = fake_upstream
    client = await gateway(remote(base_url, system_prompt="You are a finance assistant."))
    await client.post("/v1/chat/completions", json=user("what is an ETF"))
    assert fake.requests[-1]["messages"] == [
        {"role": "system", "content": "You are a finance assistant."},
        {"role": "user", "content": "what is an ETF"},
    ]
    own = {"messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "x"}]}
    await client.post("/v1/chat/completions", json=own)
    assert fake.requests[-1]["messages"][0] == {"role": "system", "content": "mine"}


async def test_a_domain_experts_unknown_parameters_pass_upstream_whatever_their_size(
    gateway, fake_upstream
):
    # An integer over 64 bits in a parameter the gateway does not know is the upstream's to
    # judge: it used to fail the expert with a 502, counted against its circuit breaker.
    fake, base_url = fake_upstream
    client = await gateway(remote(base_url, system_prompt="You are a finance assistant."))
    for stream in (False, True):
        body = user("hi", stream=stream, logit_bias={"42": 2**100}, top_logprobs=2**70)
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status == 200, await response.text()
        sent = fake.requests[-1]
        assert sent["logit_bias"] == {"42": 2**100} and sent["top_logprobs"] == 2**70
        assert sent["messages"][0] == {"role": "system", "content": "You are a finance assistant."}


def test_a_missing_key_variable_is_a_startup_error(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="experts.remote.api_key_env.*NOT_SET_ANYWHERE"):
        make_moe(remote("http://127.0.0.1:1/v1", api_key_env="NOT_SET_ANYWHERE"))
    with pytest.raises(ConfigError, match="experts.remote.base_url.*must be an http\\(s\\) URL"):
        make_moe(remote("ftp://example"))
    assert make_moe(remote("http://127.0.0.1:1/v1/")).experts["remote"].expert.options.base_url == (
        "http://127.0.0.1:1/v1"
    )


async def test_streams_pass_through_without_buffering(gateway, fake_upstream):
    fake, base_url = fake_upstream
    fake.behaviour.reply = "one two three four five"
    fake.behaviour.chunk_delay_s = 0.15
    client = await gateway(remote(base_url))
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", json=user("x", stream=True))
    arrivals = []
    async for line in response.content:
        if b'"content":"' in line and b'"content":""' not in line:
            arrivals.append(time.monotonic() - started)
    # Four gaps of 0.15 s upstream: a buffering gateway would deliver every word at the end.
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 0.45
    assert arrivals[0] < arrivals[-1] - 0.4
    assert fake.requests[-1]["stream"] is True


@pytest.mark.parametrize(
    ("status", "retry_after", "gateway_status", "code", "fragment"),
    [
        (500, None, 502, "upstream_error", "status 500) failed: fake upstream error 500"),
        (503, None, 502, "upstream_error", "fake upstream error 503"),
        (401, None, 502, "upstream_error", "refused the gateway's credentials"),
        (429, "7", 429, "rate_limit_exceeded", "is rate limited"),
        (400, None, 400, "upstream_rejected", "rejected the request"),
    ],
)
async def test_upstream_errors_become_clear_gateway_errors(
    gateway, fake_upstream, status, retry_after, gateway_status, code, fragment
):
    fake, base_url = fake_upstream
    fake.behaviour.status = status
    fake.behaviour.retry_after = retry_after
    client = await gateway(remote(base_url))
    for stream in (False, True):
        response = await client.post("/v1/chat/completions", json=user("x", stream=stream))
        assert response.status == gateway_status
        error = (await response.json())["error"]
        assert error["code"] == code and fragment in error["message"]
        if retry_after:
            assert response.headers["Retry-After"] == retry_after


async def test_unreachable_and_silent_upstreams(gateway, fake_upstream):
    fake, base_url = fake_upstream
    client = await gateway(remote("http://127.0.0.1:9/v1"))  # nothing listens on port 9
    response = await client.post("/v1/chat/completions", json=user("x"))
    assert response.status == 503
    assert "cannot reach its upstream" in (await response.json())["error"]["message"]

    fake.behaviour.delay_s = 1.0
    client = await gateway(remote(base_url, first_byte_timeout_s=0.1))
    response = await client.post("/v1/chat/completions", json=user("x"))
    assert response.status == 504
    assert (await response.json())["error"]["code"] == "expert_timeout"


async def test_upstream_dying_midstream_is_an_error_event(gateway, fake_upstream):
    fake, base_url = fake_upstream
    fake.behaviour.reply = "a b c d e"
    fake.behaviour.die_after_chunks = 2
    client = await gateway(remote(base_url))
    response = await client.post("/v1/chat/completions", json=user("x", stream=True))
    assert response.status == 200
    text = await response.text()
    assert streamed_content(text) == "a b"  # what arrived before the upstream died...
    assert '"error"' in text.splitlines()[-2]  # ...then the error
    assert "[DONE]" not in text


async def test_an_error_event_after_text_that_came_with_it_keeps_the_text_first(gateway):
    """Text and an error event arriving in one read: the text still reaches the client, then the
    error, as when they arrive apart."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        text = {"choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
        error = {"error": {"message": "overloaded", "type": "server_error"}}
        await response.write(b"data: %s\n\ndata: %s\n\n" % (dumps(text), dumps(error)))
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        client = await gateway(remote(str(server.make_url("/v1"))))
        response = await client.post("/v1/chat/completions", json=user("x", stream=True))
        text = await response.text()
    finally:
        await server.close()
    assert streamed_content(text) == "partial"
    assert '"error"' in text.splitlines()[-2] and "overloaded" in text.splitlines()[-2]


async def test_failing_upstream_falls_back_to_the_next_expert(gateway, fake_upstream):
    fake, base_url = fake_upstream
    fake.behaviour.status = 500
    config = remote(base_url)
    config["experts"]["remote"]["fallbacks"] = ["local"]
    config["experts"]["local"] = {"kind": "echo", "prefix": "local: "}
    client = await gateway(config)
    for stream in (False, True):
        response = await client.post("/v1/chat/completions", json=user("hi", stream=stream))
        assert response.status == 200
        text = await response.text()
        assert "local" in text and '"expert":"remote"' in text
