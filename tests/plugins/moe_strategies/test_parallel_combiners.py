"""first-success and concat: several experts at once, failures tolerated and reported."""

from __future__ import annotations

import time

import pytest

from moe_core import ExpertTimeout, UpstreamError
from moe_core.testing import make_moe
from tests.conftest import user

EXPERTS = {
    "slow": {"kind": "echo", "prefix": "slow: ", "delay_s": 0.5},
    "fast": {"kind": "echo", "prefix": "fast: ", "delay_s": 0.01},
    "broken": {"kind": "echo", "fail": "error"},
    "stuck": {"kind": "echo", "fail": "hang"},
}


def config(kind: str, experts: list[str], **options) -> dict:
    return {"experts": EXPERTS, "combiner": {"kind": kind, "experts": experts, **options}}


async def test_first_success_takes_the_fastest_good_answer_and_cancels_the_rest():
    async with make_moe(config("first-success", ["broken", "slow", "fast"])) as moe:
        started = time.perf_counter()
        response = await moe.complete(user("hi"))
        elapsed = time.perf_counter() - started
        streamed = await moe.open_stream(user("a b c"))
        text = "".join([d.content or "" async for d in streamed])
    assert response.result.content == "fast: hi"
    assert elapsed < 0.4  # the slow expert was not waited for
    assert response.metadata.strategy == "first-success"
    assert response.metadata.experts_used == ["fast"]
    assert [f.expert for f in response.metadata.fallbacks] == ["broken"]
    assert text == "fast: a b c"


async def test_first_success_reports_every_failure_and_honours_its_deadline():
    async with make_moe(config("first-success", ["broken", "broken"])) as moe:
        with pytest.raises(UpstreamError, match="failed as configured"):
            await moe.complete(user("hi"))
    async with make_moe(config("first-success", ["stuck"], deadline_s=0.1)) as moe:
        with pytest.raises(
            ExpertTimeout,
            match="combiner 'first-success': no complete answer within its 0.1 s deadline",
        ):
            await moe.complete(user("hi"))
        with pytest.raises(
            ExpertTimeout,
            match="combiner 'first-success': no complete answer within its 0.1 s deadline",
        ):
            async for _ in await moe.open_stream(user("hi")):
                pass


async def test_concat_labels_each_answer_and_tolerates_a_failure():
    async with make_moe(config("concat", ["fast", "broken", "slow"])) as moe:
        response = await moe.complete(user("one two"))
    assert response.result.content == "**fast**:\nfast: one two\n\n**slow**:\nslow: one two"
    assert sorted(response.metadata.experts_used) == ["fast", "slow"]
    assert [f.expert for f in response.metadata.fallbacks] == ["broken"]
    assert response.result.usage.completion_tokens == 6  # summed over both answers
    assert set(response.metadata.latency_ms) == {"fast", "broken", "slow"}


async def test_a_request_may_ask_for_a_combiner_by_name():
    config = {
        "experts": EXPERTS,
        "gate": {"kind": "fixed", "expert": "fast", "fallbacks": ["slow"]},
    }
    async with make_moe(config) as moe:
        response = await moe.complete(user("hi", moe={"strategy": "concat"}))
    assert response.metadata.strategy == "concat"
    assert "**fast**" in response.result.content and "**slow**" in response.result.content


def test_combiner_experts_are_checked_at_startup():
    from moe_core import ConfigError

    with pytest.raises(ConfigError, match=r"combiner.experts\[1\]: unknown expert 'nobody'"):
        make_moe(config("concat", ["fast", "nobody"]))


async def test_over_http_streaming_and_not(gateway):
    client = await gateway(config("first-success", ["broken", "fast"]))
    body = await (await client.post("/v1/chat/completions", json=user("hi"))).json()
    assert body["choices"][0]["message"]["content"] == "fast: hi"
    assert body["moe_metadata"]["fallbacks"][0]["expert"] == "broken"
    response = await client.post("/v1/chat/completions", json=user("hi there", stream=True))
    text = await response.text()
    assert '"content":"fast:"' in text and text.rstrip().endswith("data: [DONE]")
