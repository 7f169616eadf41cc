"""The official openai SDK (sync, async, streaming) works against the gateway unchanged."""

from __future__ import annotations

import asyncio

import openai
import pytest

ECHO = {
    "experts": {
        "echo": {"kind": "echo", "prefix": "echo: "},
        "other": {"kind": "echo", "prefix": "other: "},
    }
}


async def sdk(gateway, config=ECHO, **kwargs) -> openai.AsyncOpenAI:
    client = await gateway(config)
    return openai.AsyncOpenAI(
        base_url=str(client.make_url("/v1")),
        api_key=kwargs.pop("api_key", "unused"),
        max_retries=0,
        **kwargs,
    )


async def test_async_create_and_stream(gateway):
    client = await sdk(gateway)
    completion = await client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert completion.choices[0].message.content == "echo: What is the capital of France?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 7
    metadata = completion.model_extra["moe_metadata"]
    assert metadata["experts_used"] == ["echo"] and metadata["gate"] == "fixed"
    assert metadata["strategy"] == "single" and "echo" in metadata["latency_ms"]

    stream = await client.chat.completions.create(
        model="other",
        messages=[{"role": "user", "content": "a b c"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "other: a b c"
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[-1].choices[0].finish_reason == "stop"
    assert finish[-1].model_extra["moe_metadata"]["experts_used"] == ["other"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_models_list_has_every_expert_and_auto(gateway):
    client = await sdk(gateway)
    models = [model.id async for model in client.models.list()]
    assert models == ["auto", "echo", "other"]
    assert (await client.models.retrieve("echo")).id == "echo"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("missing")


async def test_errors_raise_the_sdks_own_exceptions(gateway):
    client = await sdk(gateway)
    with pytest.raises(openai.NotFoundError) as not_found:
        await client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    assert bad.value.param == "temperature"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}], stream=True
        )


async def test_auth_errors_raise_authentication_error(gateway, monkeypatch):
    monkeypatch.setenv("SDK_TEST_KEYS", "right")
    config = {**ECHO, "server": {"api_keys_env": "SDK_TEST_KEYS"}}
    client = await sdk(gateway, config, api_key="wrong")
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}]
        )


async def test_a_stream_that_dies_midway_raises_in_the_sdk(gateway):
    config = {"experts": {"dying": {"kind": "echo", "fail_after_chunks": 2}}}
    client = await sdk(gateway, config)
    stream = await client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="died mid-stream"):
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content)
    assert "".join(filter(None, received)) == "one two"


async def test_sync_client_works_too(gateway):
    client = await gateway(ECHO)
    sync = openai.OpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)

    def use_it() -> tuple[str, str]:
        completion = sync.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "sync"}]
        )
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in sync.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "sync stream"}], stream=True
            )
            if chunk.choices
        )
        return completion.choices[0].message.content, streamed

    # The server runs on this event loop, so the blocking client runs in a thread.
    content, streamed = await asyncio.to_thread(use_it)
    assert content == "echo: sync" and streamed == "echo: sync stream"


async def test_openai_alias_and_route_endpoint(gateway):
    client = await gateway(ECHO)
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    alias = await (await client.post("/openai", json=body)).json()
    assert alias["object"] == "chat.completion"
    assert alias["choices"][0]["message"]["content"] == "echo: hi"
    decision = await (await client.post("/v1/route", json=body)).json()
    assert decision["object"] == "moe.routing_decision"
    assert decision["experts"] == ["echo"] and decision["gate"] == "fixed"
    assert decision["rationale"] and decision["confidence"] == 1.0
    # Routing generated nothing: the memory tracker saw no expert call.
    stats = await (await client.get("/-/stats")).json()
    assert stats["memory"]["experts"]["echo"]["calls"] == 1  # only the /openai call
