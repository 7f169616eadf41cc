"""Capability-aware routing: a request that needs tools, images, JSON output, logprobs or
penalties only reaches experts whose card honours it, a named expert that cannot is a 400
naming the parameter, and a configuration may drop what an expert cannot do instead."""

from __future__ import annotations

from typing import Any

from moe_core.models import ChatRequest
from moe_core.parts import Preparer
from moe_core.plugins import Register, hookimpl
from moe_core.run import Run
from tests.conftest import user

TOOLS = [{"type": "function", "function": {"name": "save", "parameters": {"type": "object"}}}]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0"}}


def config(**server: Any) -> dict[str, Any]:
    return {
        "server": server,
        "experts": {
            "local": {"kind": "echo", "prefix": "local: "},
            "tooled": {
                "kind": "echo",
                "prefix": "tooled: ",
                "card": {"supports_tools": True, "supports_vision": True},
            },
        },
        "gate": {"kind": "fixed", "expert": "local"},
    }


def with_image(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}, IMAGE]}


async def test_a_tools_request_named_to_an_expert_without_tools_is_a_400_naming_tools(gateway):
    client = await gateway(config())
    response = await client.post(
        "/v1/chat/completions", json=user("hi", model="local", tools=TOOLS)
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == "tools"
    assert error["code"] == "unsupported_parameter"
    assert "'local'" in error["message"]


async def test_auto_routes_a_tools_request_to_the_tool_capable_expert_and_says_why(gateway):
    client = await gateway(config())
    body = user("save it", model="auto", tools=TOOLS)
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["model"] == "tooled"
    assert "skipped local: they cannot honour tools" in answer["moe_metadata"]["rationale"]
    # Without tools the gate's own choice stands.
    plain = await client.post("/v1/chat/completions", json=user("hi"))
    assert (await plain.json())["model"] == "local"


async def test_an_image_goes_only_to_a_vision_expert_and_route_reports_the_strategy(gateway):
    client = await gateway(config())
    response = await client.post("/v1/route", json={"messages": [with_image("what is this?")]})
    decision = await response.json()
    assert decision["experts"] == ["tooled"]
    assert decision["strategy"] == "single"  # what will run, not null


async def test_no_capable_expert_at_all_is_a_400_not_a_silent_answer(gateway):
    client = await gateway(config())
    body = user("hi", logprobs=True)
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "logprobs"


async def test_drop_unsupported_params_answers_and_notes_what_was_dropped(gateway):
    client = await gateway(config(drop_unsupported_params=True))
    body = {"model": "local", "messages": [with_image("describe")], "frequency_penalty": 1.0}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "local: describe\n[image_url omitted]"
    [note] = answer["moe_metadata"]["notes"]
    assert "frequency_penalty" in note and "image_url" in note and "'local'" in note


class Describe(Preparer):
    """Replaces every image with a description, so text-only experts can take images."""

    provides = frozenset({"vision"})

    async def prepare(self, run: Run, expert: str, request: ChatRequest) -> ChatRequest:
        if run.card(expert).supports_vision:
            return request
        messages = []
        for message in request.messages:
            if isinstance(message.content, list):
                text = " ".join(
                    part.text if part.type == "text" else "[a red square]"
                    for part in message.content
                )
                message = message.model_copy(update={"content": text})
            messages.append(message)
        run.note(f"described images for {expert}")
        return request.model_copy(update={"messages": messages})


class DescribePlugin:
    @hookimpl
    def moe_register_preparers(self, register: Register) -> None:
        register("describe", Describe)


async def test_a_preparer_that_provides_vision_lets_a_text_only_expert_answer_images(gateway):
    settings = config() | {"preparers": {"images": {"kind": "describe"}}}
    client = await gateway(settings, plugins=[("describe", DescribePlugin())])
    body = {"model": "local", "messages": [with_image("what is")]}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "local: what is [a red square]"
    assert answer["moe_metadata"]["notes"] == ["described images for local"]


async def test_an_unknown_preparer_kind_is_a_startup_error_naming_its_key(gateway):
    settings = config() | {"preparers": {"images": {"kind": "nope"}}}
    try:
        await gateway(settings)
    except Exception as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("an unknown preparer kind must not start")
