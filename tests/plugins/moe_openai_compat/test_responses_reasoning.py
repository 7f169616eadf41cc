"""An expert that reports its reasoning: a ``reasoning`` item before the message, whole or
streamed as ``response.reasoning_text`` events, and never sent back to the expert."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai

from moe_core import ChatRequest, Delta, Expert, ExpertResult, Usage, hookimpl


class Thinker(Expert):
    """Thinks out loud, then answers; remembers what it was asked."""

    asked: list[ChatRequest] = []

    async def generate(self, request: ChatRequest) -> ExpertResult:
        Thinker.asked.append(request)
        return ExpertResult(content="42", reasoning_content="six times seven", usage=Usage.of(3, 2))

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        Thinker.asked.append(request)
        for piece in ("six ", "times ", "seven"):
            yield Delta(reasoning_content=piece)
        yield Delta(content="4")
        yield Delta(content="2", finish_reason="stop", usage=Usage.of(3, 2))


class _ThinkerPlugin:
    @hookimpl
    def moe_register_experts(self, register) -> None:
        register("thinker", Thinker)


async def sdk(gateway) -> openai.AsyncOpenAI:
    http = await gateway(
        {"experts": {"deep": {"kind": "thinker"}}}, plugins=[("thinker", _ThinkerPlugin())]
    )
    return openai.AsyncOpenAI(base_url=str(http.make_url("/v1")), api_key="k", max_retries=0)


async def test_reasoning_comes_first_and_stays_out_of_the_next_turn(gateway):
    client = await sdk(gateway)
    response = await client.responses.create(model="deep", input="6 x 7?")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "six times seven"
    assert message.type == "message" and response.output_text == "42"
    # The caller may send the reasoning item back; chat experts take no reasoning, so it is
    # left out of the conversation they see.
    await client.responses.create(
        model="deep", input=[{"role": "user", "content": "6 x 7?"}, *response.output]
    )
    assert [m.role for m in Thinker.asked[-1].messages] == ["user", "assistant"]
    assert Thinker.asked[-1].messages[1].content == "42"


async def test_streamed_reasoning_then_text(gateway):
    client = await sdk(gateway)
    async with client.responses.stream(model="deep", input="6 x 7?") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.reasoning_text.delta"] * 3,
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 2,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    reasoning, message = final.output
    assert reasoning.content[0].text == "six times seven"
    assert final.output_text == "42" and message.status == "completed"
    assert [event.output_index for event in events if event.type.endswith(".done")] == [
        0,
        0,
        1,
        1,
        1,
    ]
