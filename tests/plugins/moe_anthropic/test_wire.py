"""The Messages routes over raw HTTP: Anthropic's error shape for every bad input, and the
stream's exact frames."""

from __future__ import annotations

import pytest

from tests.plugins.moe_anthropic.conftest import ECHO, claude

GOOD = {"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["type"] == "error"
    assert body["request_id"] == response.headers["request-id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**GOOD, "max_tokens": None}, "max_tokens:"),
        (
            {key: value for key, value in GOOD.items() if key != "max_tokens"},
            "max_tokens: Field required",
        ),
        ({**GOOD, "messages": []}, "messages: List should have at least 1 item"),
        ({**GOOD, "temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        ({**GOOD, "frequency_penalty": 1}, "frequency_penalty: Extra inputs are not permitted"),
        ({**GOOD, "stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences:"),
        (
            {**GOOD, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            {
                **GOOD,
                "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            },
            "messages.0.content",
        ),
        (
            {**GOOD, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools.0",
        ),
        (
            {
                **GOOD,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                    }
                ],
            },
            "messages.0.content: tool_use blocks may only appear in assistant messages",
        ),
        (
            {**GOOD, "tool_choice": {"type": "tool"}, "tools": []},
            "tool_choice.name: Field required",
        ),
    ],
)
async def test_bad_requests_are_anthropic_400s_naming_the_field(gateway, body, message):
    client = await gateway(ECHO)
    error = await error_of(await client.post("/v1/messages", json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(message), error["message"]


async def test_malformed_bodies_wrong_types_and_methods(gateway):
    client = await gateway(ECHO)
    broken = await client.post(
        "/v1/messages", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in (await error_of(broken, 400))["message"]
    array = await client.post("/v1/messages", json=[GOOD])
    assert "must be a JSON object" in (await error_of(array, 400))["message"]
    text = await client.post("/v1/messages", data="hi", headers={"Content-Type": "text/plain"})
    assert (await error_of(text, 415))["type"] == "invalid_request_error"
    get = await client.get("/v1/messages")
    assert (await error_of(get, 405))["message"] == (
        "Method GET is not allowed for /v1/messages; allowed: POST"
    )
    assert get.headers["Allow"] == "POST"
    unknown = await client.post("/v1/messages/batches", json=GOOD)
    assert (await error_of(unknown, 404))["type"] == "not_found_error"


async def test_other_routes_keep_the_openai_envelope(gateway):
    client = await gateway(ECHO)
    response = await client.post("/v1/chat/completions", json={"model": "auto"})
    assert response.status == 400
    body = await response.json()
    assert "type" not in body and body["error"]["param"] == "messages"


async def test_a_request_an_expert_cannot_honour_is_refused_in_anthropics_shape(gateway):
    client = await gateway(ECHO)
    tool = {"name": "f", "input_schema": {"type": "object", "properties": {}}}
    response = await client.post("/v1/messages", json={**GOOD, "model": "echo", "tools": [tool]})
    error = await error_of(response, 400)
    assert error["type"] == "invalid_request_error" and "tools" in error["message"]


async def test_a_rate_limit_refused_before_the_handler_is_in_anthropics_shape(gateway):
    config = {
        **ECHO,
        "trackers": {"limits": {"kind": "rate-limit", "per_key": {"requests_per_minute": 1}}},
        "tracking": {"store": "memory"},
    }
    client = await gateway(config)
    assert (await client.post("/v1/messages", json=GOOD)).status == 200
    refused = await client.post("/v1/messages", json=GOOD)
    assert (await error_of(refused, 429))["type"] == "rate_limit_error"
    assert int(refused.headers["Retry-After"]) >= 1


def frames(raw: str) -> list[tuple[str, str]]:
    """Each SSE frame's event name and data line."""
    found = []
    for frame in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        found.append((lines["event"], lines["data"]))
    return found


async def test_every_stream_frame_names_its_event_and_blocks_are_numbered(gateway, fake_anthropic):
    _, base_url = fake_anthropic
    client = await gateway(claude(base_url))
    tool = {
        "name": "lookup",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    response = await client.post(
        "/v1/messages", json={**GOOD, "model": "claude", "stream": True, "tools": [tool]}
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    events = frames(await response.text())
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    starts = [data for name, data in events if name == "content_block_start"]
    assert '"index":0' in starts[0] and '"type":"text"' in starts[0]
    assert '"index":1' in starts[1] and '"type":"tool_use"' in starts[1]
    assert '"name":"lookup"' in starts[1]
    stops = [data for name, data in events if name == "content_block_stop"]
    assert stops == [
        '{"type":"content_block_stop","index":0}',
        '{"type":"content_block_stop","index":1}',
    ]
    assert '"stop_reason":"tool_use"' in events[-2][1]
