"""Two gateways on one Redis: what one learns, the other's gates read (sync signals) soon after."""

from __future__ import annotations

import asyncio

import pytest

from moe_core.appkeys import MOE_KEY
from moe_core.models import ChatRequest
from moe_core.signals import (
    BreakerSignal,
    ExperimentSignal,
    PerformanceSignal,
    WeightSignal,
    find_signals,
)
from moe_core.testing import make_moe
from moe_tracking.base import store_of
from moe_tracking.experiments import ABTestSpec
from moe_tracking.feedback import Feedback
from tests.plugins.moe_tracking.conftest import REDIS_URL, TRACKERS, ask, tracked

EXPERTS = {
    "flaky": {"kind": "echo", "fail": "error", "fallbacks": ["steady"], "card": {"provider": "p"}},
    "steady": {"kind": "echo", "card": {"provider": "q"}},
}


def pair(redis_prefix: str):
    tracking = {"redis_url": REDIS_URL, "prefix": redis_prefix, "refresh_s": 0.1}
    breaker = {"kind": "circuit-breaker", "failure_threshold": 3, "reset_timeout_s": 60}
    config = tracked(
        EXPERTS, store="redis", tracking=tracking, trackers={**TRACKERS, "breaker": breaker}
    )
    return make_moe(config), make_moe(config)


def signal(moe, protocol):
    return next(find_signals(moe.trackers, protocol))


async def test_the_other_instance_sees_breakers_performance_weights_and_tests(redis_prefix):
    one, two = pair(redis_prefix)
    async with one, two:
        assert not signal(two, BreakerSignal).circuit_open("flaky")
        for _ in range(3):
            response = await one.complete(ask(model="flaky", moe={"task_type": "code"}))
        await one.trackers["feedback"].record(
            Feedback(request_id=response.id, outcome="failure"), set(one.experts)
        )
        await one.trackers["ab-tests"].start_test(
            ABTestSpec(expert_a="flaky", expert_b="steady"), set(one.experts)
        )

        def seen_by_two() -> bool:
            view = signal(two, PerformanceSignal).performance("steady", None)
            return (
                signal(two, BreakerSignal).circuit_open("flaky")
                and view is not None
                and view.samples == 3
                and signal(two, WeightSignal).learned_weight("steady", "code") != 1.0
            )

        # A few refreshes (every 0.1 s); polled rather than slept, so a busy machine running
        # the tests cannot make the other instance look behind.
        for _ in range(50):
            if seen_by_two():
                break
            await asyncio.sleep(0.1)

        assert signal(two, BreakerSignal).circuit_open("flaky")
        view = signal(two, PerformanceSignal).performance("flaky", "code")
        assert view is not None and view.samples == 3 and view.success_rate == 0.0
        assert signal(two, PerformanceSignal).performance("steady", None).samples == 3
        assert signal(two, WeightSignal).learned_weight("steady", "code") == pytest.approx(0.9)
        request = ChatRequest.model_validate(ask(user="someone"))
        assigned = signal(one, ExperimentSignal).assignment(request, None)
        assert assigned in {"flaky", "steady"}
        assert signal(two, ExperimentSignal).assignment(request, None) == assigned


async def test_when_redis_goes_away_requests_are_still_served_and_feedback_is_a_503(
    redis_prefix, gateway
):
    from redis.asyncio import Redis

    trackers = {
        **TRACKERS,
        "limits": {"kind": "rate-limit", "per_key": {"requests_per_minute": 100}},
    }
    tracking = {"redis_url": REDIS_URL, "prefix": redis_prefix}
    client = await gateway(tracked(EXPERTS, store="redis", tracking=tracking, trackers=trackers))
    answered = await client.post("/v1/chat/completions", json=ask(model="steady"))
    store = store_of(client.server.app[MOE_KEY])
    live = store._redis
    store._redis = Redis.from_url("redis://127.0.0.1:1/0")  # the server is gone
    try:
        response = await client.post("/v1/chat/completions", json=ask(model="steady"))
        assert response.status == 200, "breakers and limits fail open while the store is down"
        feedback = await client.post(
            "/v1/feedback", json={"request_id": (await answered.json())["id"], "rating": 5}
        )
        assert feedback.status == 503
        error = (await feedback.json())["error"]
        assert error["code"] == "store_unavailable" and "nothing was recorded" in error["message"]
    finally:
        await store._redis.aclose()
        store._redis = live
