"""The ``anthropic`` expert: ``/v1/chat/completions`` (the openai SDK) reaching a faithful fake
Anthropic upstream, streamed or not, tools included, and its failures mapped to the core's."""

from __future__ import annotations

import json

import openai
import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from tests.conftest import user
from tests.plugins.moe_anthropic.conftest import claude

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        },
    },
}


async def openai_sdk(gateway, config) -> openai.AsyncOpenAI:
    client = await gateway(config)
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)


async def test_chat_completions_reach_the_anthropic_upstream(gateway, fake_anthropic, monkeypatch):
    fake, base_url = fake_anthropic
    fake.behaviour.api_key = "sk-ant-test"
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    config = claude(base_url, model="claude-big", api_key_env="TEST_ANTHROPIC_KEY", max_tokens=77)
    client = await openai_sdk(gateway, config)
    completion = await client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        temperature=1.5,
        top_p=0.9,
        stop=["\n\n"],
        user="u-1",
    )
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 4 and completion.usage.completion_tokens == 3
    sent, headers = fake.requests[-1], fake.headers[-1]
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert headers["Content-Type"] == "application/json"
    assert sent["model"] == "claude-big" and sent["max_tokens"] == 77
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    ]
    assert sent["temperature"] == 1.0  # OpenAI's 0-2 range, capped at Anthropic's 1
    assert sent["top_p"] == 0.9 and sent["stop_sequences"] == ["\n\n"]
    assert sent["metadata"] == {"user_id": "u-1"}


async def test_streamed_chat_completion_from_anthropic_events(gateway, fake_anthropic):
    _, base_url = fake_anthropic
    client = await openai_sdk(gateway, claude(base_url))
    stream = await client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "a b c"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: a b"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["length"]
    assert chunks[-1].usage.prompt_tokens == 3 and chunks[-1].usage.completion_tokens == 3


async def test_tools_round_trip_through_chat_completions(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = await openai_sdk(gateway, claude(base_url))
    question = {"role": "user", "content": "Lisbon"}
    first = await client.chat.completions.create(
        model="claude", messages=[question], tools=[WEATHER], parallel_tool_calls=False
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Calling get_weather."
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lisbon", "days": 1}
    sent = fake.requests[-1]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER["function"]["parameters"],
            "description": "The current weather in a city",
        }
    ]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}

    second = await client.chat.completions.create(
        model="claude",
        tools=[WEATHER],
        messages=[
            question,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "rain"},
            {"role": "user", "content": "And tomorrow?"},
        ],
    )
    assert second.choices[0].message.content == "tool said: rain"
    turns = fake.requests[-1]["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"city": "Lisbon", "days": 1},
    }
    # The tool's result and the next question are one user turn, the result first.
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": "rain"},
        {"type": "text", "text": "And tomorrow?"},
    ]


async def test_streamed_tool_calls_arrive_as_openai_tool_call_deltas(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = await openai_sdk(gateway, claude(base_url))
    stream = await client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Oslo"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    arguments, names, ids, finish = "", [], [], None
    async for chunk in stream:
        if not chunk.choices:
            continue
        for call in chunk.choices[0].delta.tool_calls or ():
            assert call.index == 0
            arguments += call.function.arguments or ""
            names += [call.function.name] if call.function.name else []
            ids += [call.id] if call.id else []
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["get_weather"] and len(ids) == 1
    assert json.loads(arguments) == {"city": "Oslo", "days": 1}
    assert finish == "tool_calls"
    assert fake.requests[-1]["tool_choice"] == {"type": "tool", "name": "get_weather"}


async def test_images_go_upstream_as_anthropic_image_sources(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = await gateway(claude(base_url))
    body = {
        "model": "claude",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            }
        ],
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    assert fake.requests[-1]["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [
        (400, 400, "upstream_rejected"),  # the caller's request: a 4xx no breaker counts
        (401, 502, "upstream_error"),  # the gateway's key, never blamed on the caller
        (404, 502, "upstream_error"),  # the configured model does not exist
        (500, 502, "upstream_error"),
        (529, 503, "expert_unavailable"),  # overloaded: fallbacks answer, Retry-After kept
    ],
)
async def test_upstream_errors_become_the_gateways(gateway, fake_anthropic, upstream, status, code):
    fake, base_url = fake_anthropic
    fake.behaviour.status, fake.behaviour.retry_after = upstream, "3"
    client = await gateway(claude(base_url))
    for stream in (False, True):
        response = await client.post(
            "/v1/chat/completions", json=user("hi", model="claude", stream=stream)
        )
        assert response.status == status, await response.text()
        error = (await response.json())["error"]
        assert error["code"] == code
        assert f"status {upstream}" in error["message"]
        assert f"fake upstream error {upstream}" in error["message"]
        if upstream == 529:
            assert response.headers["Retry-After"] == "3"


async def test_a_rate_limited_upstream_keeps_its_retry_after(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    fake.behaviour.status, fake.behaviour.retry_after = 429, "12"
    client = await gateway(claude(base_url))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 429
    assert response.headers["Retry-After"] == "12"


async def test_an_overloaded_upstream_falls_back(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    fake.behaviour.status = 529
    config = claude(base_url, fallbacks=["echo"])
    config["experts"]["echo"] = {"kind": "echo", "prefix": "echo said: "}
    client = await gateway(config)
    body = await (await client.post("/v1/chat/completions", json=user("hi", model="claude"))).json()
    assert body["choices"][0]["message"]["content"] == "echo said: hi"
    assert body["moe_metadata"]["fallbacks"][0]["expert"] == "claude"
    assert "overloaded" in body["moe_metadata"]["fallbacks"][0]["error"]


async def test_a_failure_mid_stream_ends_the_stream_with_an_error(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = await openai_sdk(gateway, claude(base_url))
    for failure in ("error_after_chunks", "die_after_chunks"):
        fake.behaviour = type(fake.behaviour)(**{failure: 2})
        stream = await client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        received = []
        with pytest.raises(openai.APIError, match="mid-stream|before message_stop|reach"):
            async for chunk in stream:
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")
        assert "".join(received) == "echo: one"


async def test_an_unreachable_upstream_is_a_503_and_a_slow_one_a_504(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = await gateway(claude("http://127.0.0.1:9", connect_timeout_s=2))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 503
    assert "cannot reach the upstream" in (await response.json())["error"]["message"]
    fake.behaviour.delay_s = 1.0
    client = await gateway(claude(base_url, read_timeout_s=0.2))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 504
    assert "silent for more than 0.2 s" in (await response.json())["error"]["message"]


def test_a_missing_key_stops_startup_naming_the_setting(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"experts\.claude\.api_key_env.*ANTHROPIC_API_KEY"):
        make_moe({"experts": {"claude": {"kind": "anthropic"}}})


def test_the_card_says_what_the_expert_can_do(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    moe = make_moe({"experts": {"claude": {"kind": "anthropic", "model": "claude-x"}}})
    card = moe.experts["claude"].card
    assert card.provider == "api.anthropic.com"
    assert card.supports_tools and card.supports_vision and card.supports_streaming
    assert "image" in card.modalities_in


async def test_only_the_upstreams_own_failures_open_its_breaker(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    config = {
        **claude(base_url),
        "trackers": {"breaker": {"kind": "circuit-breaker", "failure_threshold": 2}},
        "tracking": {"store": "memory"},
    }
    client = await gateway(config)
    fake.behaviour.status = 400
    for _ in range(3):
        response = await client.post("/v1/chat/completions", json=user("hi"))
        assert response.status == 400  # the caller's mistake, every time: the breaker stays shut
    fake.behaviour.status = 529
    before = len(fake.requests)
    responses = [await client.post("/v1/chat/completions", json=user("hi")) for _ in range(3)]
    assert [response.status for response in responses] == [503, 503, 503]
    assert len(fake.requests) == before + 2  # the third was refused by the open breaker
    assert "circuit" in (await responses[2].json())["error"]["message"]


async def test_thinking_becomes_reasoning_content(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    fake.behaviour.thinking = "Let me think."
    client = await openai_sdk(gateway, claude(base_url))
    messages = [{"role": "user", "content": "hi"}]
    completion = await client.chat.completions.create(model="claude", messages=messages)
    assert completion.choices[0].message.model_extra["reasoning_content"] == "Let me think."
    assert completion.choices[0].message.content == "echo: hi"
    stream = await client.chat.completions.create(model="claude", messages=messages, stream=True)
    reasoning = [
        chunk.choices[0].delta.model_extra.get("reasoning_content")
        async for chunk in stream
        if chunk.choices
    ]
    assert "Let me think." in reasoning


async def test_json_schema_output_goes_upstream_as_output_config(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    fake.behaviour.reply = '{"ok": true}'
    client = await openai_sdk(gateway, claude(base_url))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    completion = await client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "ok?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content) == {"ok": True}
    assert fake.requests[-1]["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }
