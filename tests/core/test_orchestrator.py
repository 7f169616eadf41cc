"""The Python API: routing, fallbacks, streaming, metadata and tracker events, without a server."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from moe_core import (
    ChatRequest,
    ExpertCard,
    ExpertTimeout,
    Gate,
    GateError,
    ModelNotFound,
    MoE,
    RoutingDecision,
    Tracker,
    UpstreamError,
    hookimpl,
)
from moe_core.events import Event, ExpertCalled, RequestFinished, RequestStarted, RouteDecided
from moe_core.testing import make_moe
from tests.conftest import user


class RecordingTracker(Tracker):
    """Keeps every event it sees (class-level so a test can reach the instance's list)."""

    seen: list[Event] = []

    async def observe(self, event: Event) -> None:
        RecordingTracker.seen.append(event)


class OutcomeTracker(Tracker):
    """Wants only the end of each request."""

    observes = (RequestFinished,)
    seen: list[Event] = []

    async def observe(self, event: Event) -> None:
        OutcomeTracker.seen.append(event)


class BrokenTracker(Tracker):
    async def observe(self, event: Event) -> None:
        raise RuntimeError("tracker bug")


class TunedGate(Gate):
    """Picks the last expert and tunes temperature and max_tokens."""

    async def route(self, request, experts: Mapping[str, ExpertCard], signals) -> RoutingDecision:
        return RoutingDecision(
            experts=[list(experts)[-1]],
            confidence=0.42,
            rationale="tuned",
            runner_up=next(iter(experts)),
            overrides={"temperature": 0.1, "max_tokens": 2},
        )


class RogueGate(Gate):
    async def route(self, request, experts, signals) -> RoutingDecision:
        return RoutingDecision(experts=["nobody"], rationale="bug")


class CrashingGate(Gate):
    async def route(self, request, experts, signals) -> RoutingDecision:
        raise ZeroDivisionError("a bug in the gate")


class TestPlugin:
    @hookimpl
    def moe_register_trackers(self, register):
        register("recording", RecordingTracker)
        register("broken", BrokenTracker)
        register("outcomes", OutcomeTracker)

    @hookimpl
    def moe_register_gates(self, register):
        register("tuned", TunedGate)
        register("rogue", RogueGate)
        register("crashing", CrashingGate)


def build(config: dict) -> MoE:
    return make_moe(config, plugins=[("test", TestPlugin())])


async def test_auto_goes_to_the_gate_and_a_named_expert_goes_to_that_expert():
    moe = build(
        {
            "experts": {
                "a": {"kind": "echo", "prefix": "A:"},
                "b": {"kind": "echo", "prefix": "B:"},
            },
            "gate": {"kind": "fixed", "expert": "b"},
        }
    )
    async with moe:
        auto = await moe.complete(user("hi"))
        named = await moe.complete(user("hi", model="a"))
        forced = await moe.complete(user("hi", moe={"force_expert": "a"}))
    assert auto.result.content == "B:hi"
    assert auto.metadata.gate == "fixed" and auto.metadata.experts_used == ["b"]
    assert named.result.content == "A:hi" and named.metadata.gate == "direct"
    assert forced.result.content == "A:hi"
    assert "moe.force_expert" in forced.metadata.rationale


async def test_a_gate_alias_is_another_name_for_auto():
    moe = build(
        {
            "experts": {"a": {"kind": "echo", "prefix": "A:"}, "b": {"kind": "echo"}},
            "gate": {"kind": "fixed", "expert": "a", "aliases": ["moe-auto"]},
        }
    )
    async with moe:
        aliased = await moe.complete(user("hi", model="moe-auto"))
    assert moe.model_ids() == ["auto", "moe-auto", "a", "b"]
    assert aliased.result.content == "A:hi" and aliased.model == "a"
    assert aliased.metadata.gate == "fixed" and aliased.metadata.experts_used == ["a"]


async def test_route_decides_without_calling_any_expert():
    moe = build({"experts": {"a": {"kind": "echo", "fail": "error"}}})
    async with moe:
        decision = await moe.route(user("hi"))
    assert decision.experts == ["a"] and decision.gate == "fixed"
    assert moe.experts["a"].expert.calls == 0


async def test_unknown_model_lists_what_exists():
    moe = build({"experts": {"a": {"kind": "echo"}}})
    async with moe:
        with pytest.raises(ModelNotFound, match="'gpt-9'.*available: auto, a") as caught:
            await moe.complete(user("hi", model="gpt-9"))
    assert caught.value.status == 404 and caught.value.param == "model"


async def test_failure_falls_back_in_order_and_metadata_says_so():
    moe = build(
        {
            "experts": {
                "primary": {"kind": "echo", "fail": "error", "fallbacks": ["secondary"]},
                "secondary": {"kind": "echo", "fail": "error"},
                "last": {"kind": "echo", "prefix": "last:"},
            },
            "gate": {"kind": "fixed", "expert": "primary", "fallbacks": ["last"]},
        }
    )
    async with moe:
        response = await moe.complete(user("hi"))
    assert response.result.content == "last:hi"
    assert [f.expert for f in response.metadata.fallbacks] == ["primary", "secondary"]
    assert "failed as configured" in response.metadata.fallbacks[0].error
    assert response.metadata.experts_used == ["last"]
    assert set(response.metadata.latency_ms) == {"primary", "secondary", "last"}


async def test_when_every_expert_fails_the_error_names_them_all():
    moe = build(
        {
            "experts": {
                "a": {"kind": "echo", "fail": "error", "fallbacks": ["b"]},
                "b": {"kind": "echo", "fail": "error"},
            }
        }
    )
    async with moe:
        with pytest.raises(UpstreamError, match="'b' failed.*fallbacks tried before it: a:"):
            await moe.complete(user("hi"))


async def test_a_hanging_expert_times_out_and_the_fallback_answers():
    moe = build(
        {
            "experts": {
                "slow": {"kind": "echo", "fail": "hang", "timeout_s": 0.05, "fallbacks": ["fast"]},
                "fast": {"kind": "echo"},
            }
        }
    )
    async with moe:
        response = await moe.complete(user("hi"))
        assert response.metadata.fallbacks[0].expert == "slow"
        assert "did not answer within 0.05 s" in response.metadata.fallbacks[0].error
        # Named directly, "slow" still has its configured fallback...
        assert (await moe.complete(user("hi", model="slow"))).metadata.experts_used == ["fast"]

    moe = build({"experts": {"slow": {"kind": "echo", "fail": "hang", "timeout_s": 0.05}}})
    async with moe:
        # ...and with none left, the timeout is the answer.
        with pytest.raises(ExpertTimeout, match="within 0.05 s"):
            await moe.complete(user("hi"))


async def test_streaming_yields_deltas_and_metadata_at_the_end():
    moe = build({"experts": {"a": {"kind": "echo"}}})
    async with moe:
        stream = await moe.open_stream(user("one two three"))
        pieces = [delta.content async for delta in stream if delta.content]
    assert pieces == ["one", " two", " three"]
    assert stream.metadata is not None and stream.metadata.experts_used == ["a"]


async def test_streaming_falls_back_before_the_first_chunk_but_not_after():
    moe = build(
        {
            "experts": {
                "dead": {"kind": "echo", "fail": "error", "fallbacks": ["dies_late"]},
                "dies_late": {"kind": "echo", "fail_after_chunks": 2, "fallbacks": ["ok"]},
                "ok": {"kind": "echo"},
            },
            "gate": {"kind": "fixed", "expert": "dead"},
        }
    )
    async with moe:
        stream = await moe.open_stream(user("a b c d"))
        received = []
        with pytest.raises(UpstreamError, match="died mid-stream"):
            async for delta in stream:
                received.append(delta.content)
    # "dead" failed before its first chunk, so "dies_late" took over; once it had sent
    # two chunks, falling back would have spliced two answers together, so the error surfaces.
    assert received == ["a", " b"]


async def test_trackers_see_every_step_and_a_broken_one_fails_nothing():
    RecordingTracker.seen = []
    moe = build(
        {
            "experts": {"a": {"kind": "echo"}},
            "trackers": {
                "rec": {"kind": "recording"},
                "bad": {"kind": "broken"},
                "mem": {"kind": "memory"},
            },
        }
    )
    async with moe:
        response = await moe.complete(user("hello world"))
    kinds = [type(event) for event in RecordingTracker.seen]
    assert kinds == [RequestStarted, RouteDecided, ExpertCalled, RequestFinished]
    called = RecordingTracker.seen[2]
    assert called.ok and called.expert == "a" and called.usage.completion_tokens == 2
    assert RecordingTracker.seen[3].metadata == response.metadata
    assert moe.trackers["mem"].snapshot()["experts"]["a"]["calls"] == 1


async def test_a_tracker_gets_only_the_events_it_observes():
    RecordingTracker.seen, OutcomeTracker.seen = [], []
    moe = build(
        {
            "experts": {"a": {"kind": "echo"}},
            "trackers": {"all": {"kind": "recording"}, "ends": {"kind": "outcomes"}},
        }
    )
    async with moe:
        await moe.complete(user("one"))
        with pytest.raises(ModelNotFound):
            await moe.complete(user("two", model="nobody"))
    assert [type(event) for event in OutcomeTracker.seen] == [RequestFinished, RequestFinished]
    assert [event.ok for event in OutcomeTracker.seen] == [True, False]
    # Every step of the first request; the start and the end of the refused one.
    assert len(RecordingTracker.seen) == 4 + 2


async def test_gate_overrides_apply_only_where_the_caller_left_a_value_unset():
    moe = build(
        {"experts": {"a": {"kind": "echo"}, "b": {"kind": "echo"}}, "gate": {"kind": "tuned"}}
    )
    async with moe:
        tuned = await moe.complete(user("one two three four"))
        own = await moe.complete(user("one two three four", max_tokens=3))
    assert tuned.result.content == "one two" and tuned.result.finish_reason == "length"
    assert own.result.content == "one two three"
    assert tuned.metadata.overrides == {"temperature": 0.1, "max_tokens": 2}
    assert tuned.metadata.confidence == 0.42 and tuned.metadata.runner_up == "a"


async def test_a_gate_that_crashes_is_a_gate_error_and_trackers_hear_of_it():
    RecordingTracker.seen = []
    moe = build(
        {
            "experts": {"a": {"kind": "echo"}},
            "gate": {"kind": "crashing"},
            "trackers": {"rec": {"kind": "recording"}},
        }
    )
    async with moe:
        with pytest.raises(GateError, match="gate 'crashing' failed: ZeroDivisionError"):
            await moe.complete(user("hi"))
        assert (await moe.complete(user("hi", model="a"))).result.content == "hi"
    finished = [e for e in RecordingTracker.seen if isinstance(e, RequestFinished)]
    assert [e.ok for e in finished] == [False, True]
    assert finished[0].error_code == "gate_error"


async def test_a_gate_that_picks_an_unknown_expert_is_a_clear_error():
    moe = build({"experts": {"a": {"kind": "echo"}}, "gate": {"kind": "rogue"}})
    async with moe:
        with pytest.raises(GateError, match="unknown expert"):
            await moe.complete(user("hi"))


async def test_requests_are_validated_with_the_offending_field_named():
    from moe_core import InvalidRequest

    with pytest.raises(InvalidRequest, match="temperature") as caught:
        MoE.parse(b'{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}')
    assert caught.value.param == "temperature"
    with pytest.raises(InvalidRequest, match="Missing required parameter: 'messages'"):
        MoE.parse(b'{"model":"auto"}')
    assert isinstance(MoE.parse(user("x")), ChatRequest)


async def test_usage_and_cost_come_from_the_card():
    moe = build(
        {
            "experts": {
                "a": {"kind": "echo", "card": {"cost_per_1k_input": 1.0, "cost_per_1k_output": 2.0}}
            }
        }
    )
    async with moe:
        response = await moe.complete(user("one two three"))
    assert response.result.usage.prompt_tokens == 3
    assert response.metadata.cost_usd == pytest.approx((3 * 1.0 + 3 * 2.0) / 1000)


async def test_a_requested_strategy_must_exist():
    from moe_core import InvalidRequest

    moe = build({"experts": {"a": {"kind": "echo"}}})
    async with moe:
        single = await moe.complete(user("hi", moe={"strategy": "single"}))
        assert single.metadata.strategy == "single"
        with pytest.raises(InvalidRequest, match="strategy 'vote' is not available") as caught:
            await moe.complete(user("hi", moe={"strategy": "vote"}))
    assert caught.value.param == "moe.strategy"


async def test_a_call_that_would_exceed_the_budget_is_not_started():
    from moe_core import BudgetExceeded

    moe = build(
        {
            "experts": {
                "pricey": {
                    "kind": "echo",
                    "prefix": "pricey: ",
                    "fallbacks": ["cheap"],
                    "card": {"cost_per_1k_input": 10.0, "cost_per_1k_output": 30.0},
                },
                "cheap": {
                    "kind": "echo",
                    "prefix": "cheap: ",
                    "card": {"cost_per_1k_input": 0.01, "cost_per_1k_output": 0.02},
                },
            }
        }
    )
    async with moe:
        within = await moe.complete(user("hi", max_tokens=100, moe={"budget_usd": 0.01}))
        assert within.result.content == "cheap: hi"
        assert "would pass the request's budget" in within.metadata.fallbacks[0].error
        assert moe.experts["pricey"].expert.calls == 0  # never started
        with pytest.raises(BudgetExceeded) as caught:
            await moe.complete(
                user("hi", model="cheap", max_tokens=100, moe={"budget_usd": 0.000001})
            )
        assert caught.value.status == 402
        unlimited = await moe.complete(user("hi", max_tokens=100))
        assert unlimited.result.content == "pricey: hi"
