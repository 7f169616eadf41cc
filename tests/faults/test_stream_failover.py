"""``stream_failover: continue``: a stream cut after part of its text reached the client is
carried on by the next expert (``single``'s next in the chain, ``first-success``'s next racer),
which is shown the partial text, so the client gets one whole answer; never once a tool call
was streamed, and never unless configured."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from moe_core.run import CONTINUE_NOTE
from moe_openai_compat.testing import FakeOpenAI
from tests.faults.conftest import ask, sdk
from tests.faults.upstream import FaultyUpstream

TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def config(flaky_url: str, steady_url: str, failover: str | None) -> dict[str, Any]:
    def upstream(base_url: str, fallbacks: list[str]) -> dict[str, Any]:
        return {"kind": "openai", "base_url": base_url, "model": "m", "fallbacks": fallbacks}

    combiner: dict[str, Any] = {"kind": "single"}
    if failover is not None:
        combiner["stream_failover"] = failover
    return {
        "experts": {
            "flaky": upstream(flaky_url, ["steady"]),
            "steady": upstream(steady_url, []),
        },
        "gate": {"kind": "fixed", "expert": "flaky"},
        "combiner": combiner,
        "tracking": {"store": "memory"},
    }


@pytest.fixture
async def cut(upstream: FaultyUpstream) -> FaultyUpstream:
    """The primary: it streams three chunks of its answer, then drops the connection."""
    upstream.fake.behaviour.reply = "one two three four five six"
    upstream.fake.behaviour.die_after_chunks = 3
    return upstream


async def test_the_next_expert_continues_the_text_the_client_already_has(
    gateway, cut: FaultyUpstream, fake_upstream: tuple[FakeOpenAI, str]
):
    steady, steady_url = fake_upstream
    client = await gateway(config(cut.base_url, steady_url, "continue"))
    steady.behaviour.reply = "four five six"
    answer = await ask(sdk(client), "count to six", stream=True)
    # The client sees no error: the primary's part, then the fallback's rest.
    sent = "one two three"
    assert answer.content.startswith(sent) and answer.content.endswith("four five six")
    assert answer.metadata["experts_used"] == ["steady"]
    assert answer.metadata["fallbacks"][0]["expert"] == "flaky"
    assert any("steady continues the answer" in note for note in answer.metadata["notes"])
    # The fallback was shown what was already sent, and asked to go on from there.
    messages = steady.requests[-1]["messages"]
    assert messages[0] == {"role": "user", "content": "count to six"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["content"].strip() == answer.content[: len(messages[1]["content"])].strip()
    assert messages[1]["content"].split() == sent.split()
    assert messages[2] == {"role": "user", "content": CONTINUE_NOTE}


async def test_the_continuation_keeps_within_the_callers_token_limit(
    gateway, cut: FaultyUpstream, fake_upstream: tuple[FakeOpenAI, str]
):
    steady, steady_url = fake_upstream
    client = await gateway(config(cut.base_url, steady_url, "continue"))
    chunks = await sdk(client).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "count"}],
        max_tokens=50,
        stream=True,
    )
    async for _ in chunks:
        pass
    assert 1 <= steady.requests[-1]["max_tokens"] < 50


async def test_without_the_option_the_stream_ends_with_an_error(
    gateway, cut: FaultyUpstream, fake_upstream: tuple[FakeOpenAI, str]
):
    steady, steady_url = fake_upstream
    client = await gateway(config(cut.base_url, steady_url, None))
    with pytest.raises(openai.APIError, match="incomplete"):
        await ask(sdk(client), "count to six", stream=True)
    assert steady.requests == []


async def test_a_streamed_tool_call_is_never_continued(
    gateway, cut: FaultyUpstream, fake_upstream: tuple[FakeOpenAI, str]
):
    cut.fake.behaviour.tool_arguments = '{"query": "the weather in Paris today"}'
    cut.fake.behaviour.die_after_chunks = 2
    steady, steady_url = fake_upstream
    client = await gateway(config(cut.base_url, steady_url, "continue"))
    stream = await sdk(client).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[TOOL],
        stream=True,
    )
    with pytest.raises(openai.APIError, match="incomplete"):
        async for _ in stream:
            pass
    assert steady.requests == [], "a tool call was handed to another expert to continue as text"


async def test_first_success_continues_with_the_racer_it_stopped(
    gateway, cut: FaultyUpstream, fake_upstream: tuple[FakeOpenAI, str]
):
    steady, steady_url = fake_upstream
    steady.behaviour.reply = "four five six"
    steady.behaviour.delay_s = 0.3  # the cut upstream wins the race
    conf = config(cut.base_url, steady_url, None)
    conf["combiner"] = {
        "kind": "first-success",
        "experts": ["flaky", "steady"],
        "stream_failover": "continue",
    }
    client = await gateway(conf)
    answer = await ask(sdk(client), "count to six", stream=True)
    assert answer.content.startswith("one two three") and answer.content.endswith("four five six")
    assert answer.metadata["experts_used"] == ["steady"]
    assert any("steady continues the answer" in note for note in answer.metadata["notes"])
    # Its first call lost the race and was stopped; the second carried on the answer.
    assert len(steady.requests) == 2
    assert steady.requests[-1]["messages"][-1] == {"role": "user", "content": CONTINUE_NOTE}
