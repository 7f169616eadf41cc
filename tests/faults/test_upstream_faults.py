"""A misbehaving upstream behind each combiner: every request is still answered while one healthy
expert is left, the breaker opens on the provider's faults only, and closes once it heals.

Each case runs one fault against one combiner, through the official SDK, in three phases:

1. **fault**: plain and streamed requests alternate; each is answered by the healthy expert,
   and ``moe_metadata.fallbacks`` names the failing one. A provider fault opens its breaker
   within a few requests; a 429 only cools the expert down for its ``Retry-After``; OpenAI's 400
   for a prompt over the context window (the caller's doing) changes nothing.
2. **refusal**: while the breaker is open (or the expert cools down), a request is answered
   without calling the upstream at all.
3. **recovery**: the upstream heals; within the breaker's reset timeout (or the cooldown) the
   failing expert answers again and its breaker reports ``closed``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest

from tests.faults.conftest import Answer, ask, breaker_of, sdk
from tests.faults.upstream import PROVIDER_FAULTS, RETRY_AFTER_S, Fault, FaultyUpstream

THRESHOLD = 2
RESET_S = 1.5  # long enough that no probe starts before the refusal is checked
BREAKER = {"kind": "circuit-breaker", "failure_threshold": THRESHOLD, "reset_timeout_s": RESET_S}
FIRST_BYTE_S = 0.2
# first-success cancels the slower expert: the healthy one answers after the failing one has
# failed (a hang included), or no failure would ever be seen.
STEADY_DELAY_S = {"first-success": 0.4}
COMBINERS = ["single", "first-success", "parallel-vote"]
# What the failing expert's entry in moe_metadata.fallbacks says the first time, per fault.
FIRST_ERROR = {
    Fault.RATE_LIMITED: "upstream status 429",
    Fault.SERVER_ERROR: "upstream status 500",
    Fault.UNAVAILABLE: "upstream status 503",
    Fault.HANG: f"did not start answering within {FIRST_BYTE_S:g} s",
    Fault.DROP: "closed the connection midway through its answer",
    Fault.INVALID_JSON: "answered something that is not a chat completion",
    Fault.CONTEXT_WINDOW: "maximum context length",
    Fault.NOT_LISTENING: "cannot reach its upstream",
}


def config(combiner: str, base_url: str) -> dict[str, Any]:
    """``flaky`` (the upstream) is asked first; ``steady`` (no network) is the healthy one."""
    flaky: dict[str, Any] = {
        "kind": "openai",
        "base_url": base_url,
        "model": "fake-model",
        "first_byte_timeout_s": FIRST_BYTE_S,
        "read_timeout_s": 1,
        "connect_timeout_s": 1,
    }
    steady = {"kind": "echo", "prefix": "steady: ", "delay_s": STEADY_DELAY_S.get(combiner, 0)}
    if combiner == "single":
        flaky["fallbacks"] = ["steady"]
        chosen: dict[str, Any] = {"kind": "single"}
    else:
        chosen = {"kind": combiner, "experts": ["flaky", "steady"]}
    return {
        "experts": {"flaky": flaky, "steady": steady},
        "gate": {"kind": "fixed", "expert": "flaky"},
        "combiner": chosen,
        "trackers": {"breaker": BREAKER},
        "tracking": {"store": "memory"},
    }


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("fault", list(Fault))
async def test_one_healthy_expert_answers_everything_and_the_breaker_follows_the_provider(
    gateway, upstream: FaultyUpstream, combiner: str, fault: Fault
):
    client = await gateway(config(combiner, upstream.base_url))
    api = sdk(client)
    answered = 0

    async def ask_next() -> Answer:
        """The next question, plain and streamed in turn."""
        nonlocal answered
        text = f"question-{answered}"  # one word: a slow echo streams it in one chunk
        answer = await ask(api, text, stream=answered % 2 == 1)
        answer.question = text
        answered += 1
        return answer

    async def answered_by_steady() -> Answer:
        answer = await ask_next()
        assert answer.content == f"steady: {answer.question}", f"{answer.question} unanswered"
        assert "flaky" in answer.failed_over_from
        return answer

    await upstream.fail(fault)
    first = await answered_by_steady()
    assert FIRST_ERROR[fault] in first.error_of("flaky")

    # 1. fault: the breaker opens within a few requests, on provider faults only; a 429 cools
    # the expert down at once.
    for _ in range(5):
        state = await breaker_of(client, "flaky")
        if state["state"] == "open" or state["cooldown_s"]:
            break
        await answered_by_steady()
    state = await breaker_of(client, "flaky")
    if fault in PROVIDER_FAULTS:
        assert state["state"] == "open", state
        assert state["consecutive_failures"] >= THRESHOLD
    else:
        assert state["state"] == "closed" and state["consecutive_failures"] == 0, state
        assert bool(state["cooldown_s"]) is (fault is Fault.RATE_LIMITED), state

    # 2. refusal: an open breaker or a cooldown keeps calls away from the upstream.
    refused = fault in PROVIDER_FAULTS or fault is Fault.RATE_LIMITED
    calls = upstream.calls
    answer = await answered_by_steady()
    if refused:
        assert upstream.calls == calls, "the upstream was called while its breaker was open"
        reason = "circuit breaker" if fault in PROVIDER_FAULTS else "asked for a pause"
        assert reason in answer.error_of("flaky")
    else:
        assert upstream.calls == calls + 1

    # 3. recovery: once healed, the flaky expert answers again and its breaker is closed.
    await upstream.heal()
    deadline = time.monotonic() + RESET_S + RETRY_AFTER_S + 5
    while "flaky" not in (answer := await ask_next()).metadata["experts_used"]:
        assert answer.content == f"steady: {answer.question}", "unanswered while healing"
        assert time.monotonic() < deadline, "the expert never recovered"
        await asyncio.sleep(0.1)
    assert answer.content in (f"echo: {answer.question}", f"steady: {answer.question}")
    state = await breaker_of(client, "flaky")
    assert state["state"] == "closed" and state["consecutive_failures"] == 0, state
    assert state["cooldown_s"] is None


async def test_a_stream_dropped_after_its_first_chunks_ends_with_an_error_event(
    gateway, upstream: FaultyUpstream
):
    """Once part of an answer was sent, no other expert can take over: the client is told, its
    SDK raises, and the breaker counts the provider's failure."""
    upstream.fake.behaviour.reply = "one two three four five six"
    upstream.fake.behaviour.die_after_chunks = 3
    client = await gateway(config("single", upstream.base_url))
    api = sdk(client)
    with pytest.raises(openai.APIError, match="incomplete"):
        await ask(api, "go", stream=True)
    assert (await breaker_of(client, "flaky"))["consecutive_failures"] == 1
    upstream.fake.behaviour.die_after_chunks = None
    answer = await ask(api, "again", stream=True)
    assert answer.content == "one two three four five six"
    assert (await breaker_of(client, "flaky"))["consecutive_failures"] == 0
