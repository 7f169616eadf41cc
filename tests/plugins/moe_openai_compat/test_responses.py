"""The Responses API through the official openai SDK (``responses.create``, ``.stream``,
``.parse``, ``.retrieve``, ``.delete``, ``.input_items.list``), against the gateway fronting a
faithful fake OpenAI upstream on loopback: what the caller gets, and what the upstream was
asked."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pydantic import BaseModel

from moe_openai_compat.testing import FakeOpenAI

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
def upstream(fake_upstream: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    return fake_upstream[0]


@pytest.fixture
async def client(gateway, fake_upstream: tuple[FakeOpenAI, str]) -> openai.AsyncOpenAI:
    config = {
        "experts": {
            "remote": {"kind": "openai", "base_url": fake_upstream[1], "model": "gpt-fake"},
            "echo": {"kind": "echo", "prefix": "echo: "},
        }
    }
    http = await gateway(config)
    return openai.AsyncOpenAI(base_url=str(http.make_url("/v1")), api_key="k", max_retries=0)


def sent(upstream: FakeOpenAI) -> dict[str, Any]:
    """The last chat request the upstream received."""
    return upstream.requests[-1]


async def test_create_answers_with_a_response_object(client, upstream):
    response = await client.responses.create(
        model="remote",
        input="What is 2+2?",
        instructions="Answer briefly.",
        max_output_tokens=50,
        temperature=0.2,
        metadata={"ticket": "42"},
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed" and response.model == "remote"
    assert response.output_text == "echo: What is 2+2?"
    message = response.output[0]
    assert message.type == "message" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text"
    assert response.usage.input_tokens == 5 and response.usage.output_tokens == 4
    assert response.usage.total_tokens == 9
    assert response.instructions == "Answer briefly." and response.metadata == {"ticket": "42"}
    assert response.model_extra["moe_metadata"]["experts_used"] == ["remote"]
    body = sent(upstream)
    assert body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert body["max_tokens"] == 50 and body["temperature"] == 0.2


async def test_previous_response_id_continues_the_stored_conversation(client, upstream):
    first = await client.responses.create(
        model="remote",
        instructions="Only for the first turn.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "My name is Ada."}]}],
    )
    second = await client.responses.create(
        model="remote", input="What is my name?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    # Instructions apply to their own response only, as in OpenAI's API.
    assert sent(upstream)["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "echo: My name is Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    stored = await client.responses.retrieve(first.id)
    assert stored.id == first.id and stored.output_text == "echo: My name is Ada."


async def test_unstored_and_deleted_responses_are_404s(client):
    unstored = await client.responses.create(model="echo", input="forget me", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError) as error:
        await client.responses.create(
            model="echo", input="and now?", previous_response_id=unstored.id
        )
    assert error.value.param == "previous_response_id"
    kept = await client.responses.create(model="echo", input="keep me")
    await client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve("resp_unknown")


async def test_function_calling_round_trip(client, upstream):
    upstream.behaviour.tool_arguments = '{"city": "Paris"}'
    response = await client.responses.create(
        model="remote", input="Weather in Paris?", tools=[WEATHER], tool_choice="auto"
    )
    (call,) = response.output
    assert call.type == "function_call" and call.id.startswith("fc_")
    assert call.name == "get_weather" and call.arguments == '{"city": "Paris"}'
    assert call.call_id == "call_fake_1" and response.output_text == ""
    body = sent(upstream)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == "auto"

    answer = await client.responses.create(
        model="remote",
        previous_response_id=response.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22C, sunny"}],
    )
    assert answer.output_text == "echo: 22C, sunny"
    # An assistant turn of calls alone has no content (the expert leaves nulls out).
    assert sent(upstream)["messages"][1:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_fake_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_fake_1", "content": "22C, sunny"},
    ]


async def test_output_items_can_be_sent_back_as_input(client, upstream):
    """Without a stored response, the caller carries the conversation itself."""
    upstream.behaviour.tool_arguments = '{"city": "Oslo"}'
    asked = [{"role": "user", "content": "Weather in Oslo?"}]
    response = await client.responses.create(
        model="remote", input=asked, tools=[WEATHER], store=False
    )
    follow_up = [
        *asked,
        *response.output,
        {"type": "function_call_output", "call_id": "call_fake_1", "output": "-3C"},
    ]
    answer = await client.responses.create(
        model="remote", input=follow_up, tools=[WEATHER], store=False
    )
    assert answer.output_text == "echo: -3C"
    assert [m["role"] for m in sent(upstream)["messages"]] == ["user", "assistant", "tool"]


async def test_stream_sends_the_documented_events_in_order(client):
    async with client.responses.stream(model="echo", input="one two three") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "echo: one two three" == final.output_text
    assert events[0].response.status == "in_progress" and final.status == "completed"
    assert final.usage.output_tokens == 4
    item_ids = {e.item_id for e in events if e.type == "response.output_text.delta"}
    assert item_ids == {final.output[0].id}
    stored = await client.responses.retrieve(final.id)
    assert stored.output_text == "echo: one two three"


async def test_stream_function_call_arguments(client, upstream):
    upstream.behaviour.tool_arguments = '{"city": "Rome"}'
    async with client.responses.stream(
        model="remote", input="Weather in Rome?", tools=[WEATHER]
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) > 1 and "".join(pieces) == '{"city": "Rome"}'
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.arguments == '{"city": "Rome"}'
    (call,) = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"city": "Rome"}' and call.call_id == "call_fake_1"
    assert sent(upstream)["stream"] is True


class City(BaseModel):
    city: str
    country: str


async def test_text_format_json_schema_parses_with_the_sdk(client, upstream):
    upstream.behaviour.reply = '{"city": "Paris", "country": "France"}'
    parsed = await client.responses.parse(
        model="remote", input="Capital of France?", text_format=City
    )
    assert parsed.output_parsed == City(city="Paris", country="France")
    response_format = sent(upstream)["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "City"
    assert response_format["json_schema"]["schema"]["required"] == ["city", "country"]


async def test_a_cut_answer_is_incomplete(client):
    response = await client.responses.create(
        model="remote", input="a b c d e f", max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "echo: a"
    stream = await client.responses.create(
        model="remote", input="a b c d e f", max_output_tokens=2, stream=True
    )
    events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output[0].status == "incomplete"


async def test_a_stream_that_dies_midway_ends_with_response_failed(client, upstream):
    upstream.behaviour.die_after_chunks = 2
    stream = await client.responses.create(
        model="remote", input="this answer will not finish", stream=True
    )
    events = [event async for event in stream]
    assert [event.type for event in events][-2:] == ["error", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "upstream_error"
    assert (await client.responses.retrieve(failed.id)).status == "failed"


async def test_errors_before_the_first_byte_are_http_errors(client):
    with pytest.raises(openai.NotFoundError) as error:
        await client.responses.create(model="gpt-nope", input="x", stream=True)
    assert error.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.responses.create(model="echo", input="x", temperature=9)
    assert bad.value.param == "temperature"


async def test_routing_hints_ride_along(client):
    response = await client.responses.create(
        model="auto", input="who answers?", extra_body={"moe": {"force_expert": "echo"}}
    )
    assert response.model == "echo" and response.output_text == "echo: who answers?"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 42}, "input"),
        ({}, "input"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": 7}]}, "input[0].content"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "tool_choice": "sometimes"}, "tool_choice"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format"),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "colour": "blue"}, "colour"),
    ],
)
async def test_bad_input_is_a_400_naming_the_param(gateway, body, param):
    http = await gateway({"experts": {"echo": {"kind": "echo"}}})
    response = await http.post("/v1/responses", json={"model": "echo", **body})
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_input_items_list_what_a_response_answered(client):
    first = await client.responses.create(model="echo", input="hello there")
    [item] = [item async for item in client.responses.input_items.list(first.id)]
    assert item.type == "message" and item.role == "user" and item.id.startswith("msg_")
    assert item.content[0].type == "input_text" and item.content[0].text == "hello there"

    items = [
        {"role": "user", "content": "What is the weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]},
    ]
    second = await client.responses.create(model="echo", input=items, previous_response_id=first.id)
    # Only this response's own input, the newest first unless asked otherwise, in pages.
    listed = [item async for item in client.responses.input_items.list(second.id, limit=2)]
    assert [item.type for item in listed] == [
        "message", "message", "function_call_output", "function_call", "message",
    ]  # fmt: skip
    assert listed[0].content[0].text == "And tomorrow?"
    assert listed[1].role == "assistant" and listed[1].content[0].type == "output_text"
    assert listed[3].call_id == "call_1" and listed[3].name == "weather"
    ascending = await client.responses.input_items.list(second.id, order="asc", limit=100)
    assert [item.id for item in ascending.data] == [item.id for item in reversed(listed)]
    assert ascending.has_more is False
    again = await client.responses.input_items.list(second.id, order="asc")
    assert [item.id for item in again.data] == [item.id for item in ascending.data]  # stable ids


async def test_input_items_refuse_unknown_responses_and_bad_pages(client):
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_items.list("resp_unknown")
    unstored = await client.responses.create(model="echo", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_items.list(unstored.id)
    kept = await client.responses.create(model="echo", input="x")
    for query, param in (
        ({"limit": 0}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "no"}, "after"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.input_items.list(kept.id, **query)
        assert refused.value.body["param"] == param


async def test_workers_sharing_the_sqlite_store_continue_each_others_responses(gateway, tmp_path):
    """Under ``--workers`` a client's next request may reach another process: with the shared
    file (what ``auto`` picks there) every worker reads, continues and deletes any response."""
    shared = {"responses_store": "sqlite", "responses_store_path": str(tmp_path / "r.sqlite3")}
    config = {
        "experts": {"echo": {"kind": "echo"}},
        "server": {"frontends": {"openai": shared}},
    }
    one, other = [
        openai.AsyncOpenAI(base_url=str(http.make_url("/v1")), api_key="k", max_retries=0)
        for http in (await gateway(config), await gateway(config))
    ]
    first = await one.responses.create(model="echo", input="My name is Ada.")
    second = await other.responses.create(
        model="echo", input="What is my name?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert (await other.responses.retrieve(first.id)).output_text == "My name is Ada."
    [item] = [item async for item in other.responses.input_items.list(second.id)]
    assert item.content[0].text == "What is my name?"
    await other.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await one.responses.retrieve(first.id)
