"""What an OpenAI upstream answers reaches the official SDK through the gateway as it was sent:
tool calls with ``content: null``, logprobs, refusals, system_fingerprint and service_tier,
n choices (the upstream's own, or made by separate calls where the upstream ignores n)."""

from __future__ import annotations

import json

import openai
import pytest

from moe_openai_compat.testing import FakeOpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture
async def sdk(gateway, fake_upstream):
    """The official SDK against the gateway, whose one expert fronts the fake upstream."""
    fake, base_url = fake_upstream

    async def build(**options) -> tuple[openai.AsyncOpenAI, FakeOpenAI]:
        experts = {"remote": {"kind": "openai", "base_url": base_url, **options}}
        client = await gateway({"experts": experts})
        url = str(client.make_url("/v1"))
        return openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0), fake

    return build


async def test_tool_calls_come_back_with_null_content_streamed_or_not(sdk):
    client, fake = await sdk()
    fake.behaviour.tool_arguments = '{"city": "Paris"}'
    completion = await client.chat.completions.create(model="auto", messages=ASK, tools=[WEATHER])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name) == ("call_fake_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert fake.requests[-1]["tools"] == [WEATHER]

    stream = await client.chat.completions.create(
        model="auto", messages=ASK, tools=[WEATHER], stream=True
    )
    arguments, names, finish = "", [], None
    async for chunk in stream:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or ():
                names += [piece.function.name] if piece.function.name else []
                arguments += piece.function.arguments or ""
            finish = choice.finish_reason or finish
    assert names == ["get_weather"] and json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"


async def test_logprobs_fingerprint_and_service_tier_pass_through(sdk):
    client, fake = await sdk()
    completion = await client.chat.completions.create(
        model="auto", messages=ASK, logprobs=True, top_logprobs=2
    )
    assert fake.requests[-1]["logprobs"] is True and fake.requests[-1]["top_logprobs"] == 2
    content = completion.choices[0].logprobs.content
    assert [entry.token for entry in content] == ["echo:", "weather", "in", "Paris?"]
    assert [top.token for top in content[1].top_logprobs] == ["weather", "weather~"]
    assert completion.system_fingerprint == "fp_fake" and completion.service_tier == "default"
    assert completion.choices[0].message.refusal is None
    assert completion.choices[0].message.annotations == []

    stream = await client.chat.completions.create(
        model="auto", messages=ASK, logprobs=True, top_logprobs=1, stream=True
    )
    chunks = [chunk async for chunk in stream]
    tokens = [
        entry.token
        for chunk in chunks
        for choice in chunk.choices
        if choice.logprobs
        for entry in choice.logprobs.content
    ]
    assert tokens == ["echo:", "weather", "in", "Paris?"]
    assert chunks[-1].system_fingerprint == "fp_fake"


async def test_a_refusal_is_a_refusal_with_null_content(sdk):
    client, fake = await sdk()
    fake.behaviour.refusal = "I can't help with that."
    completion = await client.chat.completions.create(model="auto", messages=ASK)
    message = completion.choices[0].message
    assert message.content is None and message.refusal == "I can't help with that."
    stream = await client.chat.completions.create(model="auto", messages=ASK, stream=True)
    pieces = [c.choices[0].delta.refusal async for c in stream if c.choices]
    assert "".join(filter(None, pieces)) == "I can't help with that."


async def test_n_choices_from_an_upstream_that_makes_them(sdk):
    client, fake = await sdk()
    completion = await client.chat.completions.create(model="auto", messages=ASK, n=2)
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert all(c.message.content == "echo: weather in Paris?" for c in completion.choices)
    assert len(fake.requests) == 1 and fake.requests[0]["n"] == 2
    assert completion.usage.completion_tokens == 8  # four words, twice

    stream = await client.chat.completions.create(model="auto", messages=ASK, n=2, stream=True)
    texts = {0: "", 1: ""}
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "echo: weather in Paris?", 1: "echo: weather in Paris?"}


@pytest.mark.parametrize("configured", [True, False])
async def test_n_choices_from_separate_calls_where_the_upstream_ignores_n(sdk, configured):
    # Configured (supports_n: false): n calls at once. Not configured: the upstream's answer
    # comes back short, and the missing choice is made by a call of its own.
    client, fake = await sdk(supports_n=not configured)
    fake.behaviour.supports_n = False
    completion = await client.chat.completions.create(model="auto", messages=ASK, n=2)
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert all(c.message.content == "echo: weather in Paris?" for c in completion.choices)
    assert len(fake.requests) == 2
    asked = [request.get("n") for request in fake.requests]
    assert asked == ([None, None] if configured else [2, None])
    assert completion.usage.prompt_tokens == 6 and completion.usage.completion_tokens == 8


async def test_n_streams_from_separate_calls_are_interleaved_and_their_usage_added(sdk):
    client, fake = await sdk(supports_n=False)
    fake.behaviour.supports_n = False
    stream = await client.chat.completions.create(
        model="auto", messages=ASK, n=3, stream=True, stream_options={"include_usage": True}
    )
    texts: dict[int, str] = {}
    usage = None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == dict.fromkeys(range(3), "echo: weather in Paris?")
    assert len(fake.requests) == 3 and all("n" not in request for request in fake.requests)
    assert usage is not None and usage.completion_tokens == 12
