"""The official ``anthropic`` SDK against the gateway: create, stream, tools, errors, auth."""

from __future__ import annotations

import anthropic
import pytest

from tests.plugins.moe_anthropic.conftest import ECHO, claude, sdk

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


async def test_create_answers_with_the_expert_that_answered(gateway):
    client = sdk(await gateway(ECHO))
    message = await client.messages.create(
        model="auto",
        max_tokens=100,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: What is the capital of France?"
    assert message.model == "echo"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 6 and message.usage.output_tokens == 7
    assert message.id.startswith("msg_")
    metadata = message.model_extra["moe_metadata"]
    assert metadata["experts_used"] == ["echo"] and metadata["gate"] == "fixed"
    assert metadata["request_id"] == message.id.removeprefix("msg_")


async def test_model_names_an_expert_and_max_tokens_limits_the_answer(gateway):
    client = sdk(await gateway(ECHO))
    message = await client.messages.create(
        model="other",
        max_tokens=2,
        messages=[{"role": "user", "content": "one two three"}],
    )
    assert message.model == "other"
    assert message.content[0].text == "other: one"
    assert message.stop_reason == "max_tokens"


async def test_system_and_content_blocks_reach_the_expert(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = sdk(await gateway(claude(base_url)))
    message = await client.messages.create(
        model="claude",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                ],
            },
        ],
    )
    assert message.content[0].text == "echo: Describe"
    sent = fake.requests[-1]
    assert sent["system"] == "Be brief.\nBe kind."
    assert [turn["role"] for turn in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][2]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
    ]


async def test_stream_gives_anthropics_events_and_a_final_message(gateway):
    client = sdk(await gateway(ECHO))
    async with client.messages.stream(
        model="auto", max_tokens=100, messages=[{"role": "user", "content": "a b c"}]
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert texts == ["echo:", " a", " b", " c"]
    assert final.content[0].text == "echo: a b c"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4 and final.usage.input_tokens == 3
    assert final.model == "echo"


async def test_raw_stream_events_come_in_anthropics_order(gateway):
    client = sdk(await gateway(ECHO))
    stream = await client.messages.create(
        model="echo", max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    events = [event async for event in stream]
    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].model_extra["moe_metadata"]["experts_used"] == ["echo"]


async def test_stop_sequences_reach_the_expert_and_end_the_answer(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    fake.behaviour.reply = "one two STOP three"
    client = sdk(await gateway(claude(base_url)))
    message = await client.messages.create(
        model="claude",
        max_tokens=50,
        stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "count"}],
    )
    assert fake.requests[-1]["stop_sequences"] == ["STOP"]
    assert message.content[0].text == "one two "
    async with client.messages.stream(
        model="claude",
        max_tokens=50,
        stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "count"}],
    ) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].text == "one two "


async def test_an_answer_ended_by_a_stop_sequence_says_which(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    fake.behaviour.reply = "one two STOP three"
    client = sdk(await gateway(claude(base_url)))
    message = await client.messages.create(
        model="claude",
        max_tokens=50,
        stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "count"}],
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"


async def test_tool_use_and_tool_result_round_trip(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = sdk(await gateway(claude(base_url)))
    question = {"role": "user", "content": "Paris"}
    first = await client.messages.create(
        model="claude", max_tokens=100, tools=[WEATHER], messages=[question]
    )
    assert first.stop_reason == "tool_use"
    assert [block.type for block in first.content] == ["text", "tool_use"]
    call = first.content[1]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    assert fake.requests[-1]["tools"] == [WEATHER]

    answer = await client.messages.create(
        model="claude",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}
                ],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].text == "tool said: sunny, 21 C"
    # The whole conversation went upstream as Anthropic turns: the tool call and its result.
    sent = fake.requests[-1]["messages"]
    assert sent[1]["content"][1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}
    ]


async def test_streamed_tool_use_arrives_as_input_json_deltas(gateway, fake_anthropic):
    _, base_url = fake_anthropic
    client = sdk(await gateway(claude(base_url)))
    async with client.messages.stream(
        model="claude",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Oslo"}],
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert "input_json" in kinds
    assert final.stop_reason == "tool_use"
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[1].name == "get_weather"
    assert final.content[1].input == {"city": "Oslo"}


async def test_tool_choice_none_keeps_tools_unused(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = sdk(await gateway(claude(base_url)))
    message = await client.messages.create(
        model="claude",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "Rome"}],
    )
    assert message.stop_reason == "end_turn" and message.content[0].text == "echo: Rome"
    assert fake.requests[-1]["tool_choice"] == {"type": "none"}


async def test_errors_raise_the_sdks_own_exceptions(gateway):
    client = sdk(await gateway(ECHO))
    with pytest.raises(anthropic.NotFoundError) as not_found:
        await client.messages.create(
            model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert not_found.value.body["error"]["type"] == "not_found_error"
    assert "claude-nope" in not_found.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(
            model="auto", max_tokens=0, messages=[{"role": "user", "content": "x"}]
        )
    assert bad.value.body["type"] == "error"
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert bad.value.body["error"]["message"].startswith("max_tokens:")
    with pytest.raises(anthropic.NotFoundError):
        async with client.messages.stream(
            model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            await stream.get_final_message()


async def test_an_upstream_failure_is_the_matching_sdk_exception(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    client = sdk(await gateway(claude(base_url)))
    request = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    fake.behaviour.status, fake.behaviour.retry_after = 529, "7"
    with pytest.raises(anthropic.ServiceUnavailableError) as overloaded:
        await client.messages.create(**request)
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    assert overloaded.value.response.headers["retry-after"] == "7"
    fake.behaviour.status = 429
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(**request)
    fake.behaviour.status = 500
    with pytest.raises(anthropic.InternalServerError) as failed:
        await client.messages.create(**request)
    assert failed.value.status_code == 502
    assert failed.value.body["error"]["type"] == "api_error"


async def test_a_stream_that_dies_midway_raises_in_the_sdk(gateway):
    config = {"experts": {"dying": {"kind": "echo", "fail_after_chunks": 2}}}
    client = sdk(await gateway(config))
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError, match="died mid-stream"):
        async with client.messages.stream(
            model="auto", max_tokens=50, messages=[{"role": "user", "content": "one two three"}]
        ) as stream:
            async for text in stream.text_stream:
                received.append(text)
    assert "".join(received) == "one two"


async def test_keys_are_accepted_as_x_api_key_or_bearer(gateway, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_TEST_KEYS", "right")
    client = await gateway({**ECHO, "server": {"api_keys_env": "ANTHROPIC_TEST_KEYS"}})
    request = {"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(anthropic.AuthenticationError) as refused:
        await sdk(client, api_key="wrong").messages.create(**request)
    # Refused by the gateway's key check, before the frontend: still Anthropic's error shape.
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "authentication_error"
    assert refused.value.request_id == refused.value.body["request_id"]
    by_x_api_key = await sdk(client, api_key="right").messages.create(**request)
    assert by_x_api_key.content[0].text == "echo: x"
    bearer = anthropic.AsyncAnthropic(
        base_url=str(client.make_url("")), auth_token="right", max_retries=0
    )
    assert (await bearer.messages.create(**request)).content[0].text == "echo: x"


async def test_count_tokens_counts_for_the_expert_the_request_goes_to(gateway):
    client = sdk(await gateway(ECHO))
    counted = await client.messages.count_tokens(
        model="auto",
        system="You answer questions.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    # No tokenizer behind an echo expert: the gateway's estimate of four characters a token.
    assert counted.input_tokens == round((21 + 30) / 4)
    assert counted.model_extra == {"moe_expert": "echo", "moe_counted_by": "estimate"}
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )


async def test_an_experts_reasoning_comes_back_as_thinking_when_asked(gateway, fake_anthropic):
    fake, base_url = fake_anthropic
    fake.behaviour.thinking = "The user greets me."
    client = sdk(await gateway(claude(base_url)))
    request = {"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    plain = await client.messages.create(**request)
    assert [block.type for block in plain.content] == ["text"]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = await client.messages.create(**request, thinking=thinking)
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "The user greets me."
    async with client.messages.stream(**request, thinking=thinking) as stream:
        final = await stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "The user greets me."
    assert final.content[1].text == "echo: hi"
    # Thinking the client sends back is not forwarded: no other expert could verify it.
    await client.messages.create(
        **{
            **request,
            "messages": [*request["messages"], {"role": "assistant", "content": final.content}],
        }
    )
    assert fake.requests[-1]["messages"][1]["content"] == [{"type": "text", "text": "echo: hi"}]
