"""The chain combiner and its reasoning-execution preset, including a reasoner that dies."""

from __future__ import annotations

import pytest

from moe_core import ChatRequest, Expert, ExpertResult, hookimpl
from moe_core.testing import make_moe
from tests.conftest import user


class Reader(Expert):
    """Answers with what its system prompt told it, so a test sees what a stage received."""

    async def generate(self, request: ChatRequest) -> ExpertResult:
        system = [m.text() for m in request.messages if m.role == "system"]
        return ExpertResult(content=f"read[{' | '.join(system)}] {request.last_user_text()}")


class ReaderPlugin:
    @hookimpl
    def moe_register_experts(self, register):
        register("reader", Reader)


def reasoning(reasoner: dict, **options) -> dict:
    return {
        "experts": {"thinker": reasoner, "doer": {"kind": "reader"}},
        "combiner": {
            "kind": "chain",
            "preset": "reasoning-execution",
            "reasoner": "thinker",
            "executor": "doer",
            **options,
        },
    }


def build(config: dict):
    return make_moe(config, plugins=[("reader", ReaderPlugin())])


async def test_the_executor_answers_from_the_reasoners_thinking():
    async with build(reasoning({"kind": "echo", "prefix": "step one, step two: "})) as moe:
        response = await moe.complete(user("add 2 and 3"))
    assert response.result.reasoning_content == "step one, step two: add 2 and 3"
    assert "<think>\nstep one, step two: add 2 and 3\n</think>" in response.result.content
    assert response.result.content.endswith("] add 2 and 3")
    assert response.metadata.experts_used == ["thinker", "doer"]
    assert response.metadata.strategy == "chain"


async def test_streaming_shows_the_thinking_in_think_tags_then_the_answer():
    async with build(reasoning({"kind": "echo", "prefix": "hmm "})) as moe:
        stream = await moe.open_stream(user("why"))
        deltas = [delta async for delta in stream]
    content = "".join(d.content or "" for d in deltas)
    reasoning_text = "".join(d.reasoning_content or "" for d in deltas)
    assert content.startswith("<think>\nhmm why\n</think>\n\n")
    assert content.endswith("<think>\nhmm why\n</think>] why")  # the executor read the thinking
    assert reasoning_text == "hmm why"
    assert stream.metadata.experts_used == ["thinker", "doer"]


async def test_a_failed_reasoner_leaves_the_executor_to_answer_alone():
    async with build(reasoning({"kind": "echo", "fail": "error"})) as moe:
        response = await moe.complete(user("hello"))
        stream = await moe.open_stream(user("hello"))
        content = "".join([d.content or "" async for d in stream])
    assert response.result.content == "read[] hello"
    assert response.metadata.fallbacks[0].expert == "thinker"
    assert content == "read[] hello"
    assert stream.metadata.fallbacks[0].expert == "thinker"


async def test_a_reasoner_dying_midstream_closes_its_thought_and_the_executor_answers():
    async with build(reasoning({"kind": "echo", "fail_after_chunks": 2})) as moe:
        stream = await moe.open_stream(user("a b c d"))
        content = "".join([d.content or "" async for d in stream])
    assert content == "<think>\na b\n</think>\n\nread[] a b c d"
    assert "died mid-stream" in stream.metadata.fallbacks[0].error


async def test_a_plain_chain_passes_each_output_on(gateway):
    config = {
        "experts": {"draft": {"kind": "echo", "prefix": "draft: "}, "edit": {"kind": "reader"}},
        "combiner": {
            "kind": "chain",
            "stages": [
                {"expert": "draft"},
                {"expert": "edit", "prompt": "Polish this: {previous}"},
            ],
        },
    }
    client = await gateway(config, plugins=[("reader", ReaderPlugin())])
    body = await (await client.post("/v1/chat/completions", json=user("hi"))).json()
    assert body["choices"][0]["message"]["content"] == "read[Polish this: draft: hi] hi"


async def test_every_combiner_honours_a_total_deadline():
    """The deadline is the gateway's, so a chain gets one without writing any code for it."""
    from moe_core import ExpertTimeout

    config = {
        "experts": {"a": {"kind": "echo", "delay_s": 0.08}, "b": {"kind": "echo", "delay_s": 0.08}},
        "combiner": {
            "kind": "chain",
            "stages": [{"expert": "a"}, {"expert": "b"}],
            "deadline_s": 0.12,
        },
    }
    async with make_moe(config) as moe:
        with pytest.raises(ExpertTimeout, match="'chain': no complete answer within its 0.12 s"):
            await moe.complete(user("hi"))
        with pytest.raises(ExpertTimeout, match="within its 0.12 s deadline"):
            async for _ in await moe.open_stream(user("one two three four")):
                pass
