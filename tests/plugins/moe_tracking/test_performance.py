"""Performance per expert x task and routing statistics, fed by the orchestrator's events only."""

from __future__ import annotations

import pytest

from moe_core.signals import PerformanceSignal, find_signals
from moe_core.testing import make_moe
from tests.plugins.moe_tracking.conftest import TRACKERS, ask, tracked

EXPERTS = {
    "fast": {"kind": "echo", "card": {"cost_per_1k_input": 1.0, "cost_per_1k_output": 2.0}},
    "flaky": {"kind": "echo", "fail": "error", "fallbacks": ["fast"]},
}


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_calls_are_counted_per_expert_and_task(store, tmp_path):
    moe = make_moe(tracked(EXPERTS, tmp_path=tmp_path, store=store))
    async with moe:
        for _ in range(4):
            await moe.complete(ask("one two three", model="flaky", moe={"task_type": "code"}))
        await moe.complete(ask("four", model="fast", moe={"task_type": "chat"}))
        [signal] = find_signals(moe.trackers, PerformanceSignal)

        flaky = signal.performance("flaky", "code")
        # Its breaker opened after three failures: the fourth request went straight to fast.
        assert flaky.samples == 3 and flaky.success_rate == 0.0

        fast_code = signal.performance("fast", "code")
        assert fast_code.samples == 4 and fast_code.success_rate == 1.0
        # echo: 3 prompt words in, 3 words out at $1/$2 per 1k tokens
        assert fast_code.avg_cost_usd == pytest.approx((3 * 1.0 + 3 * 2.0) / 1000)
        assert fast_code.latency_p95_ms is not None and fast_code.latency_ema_ms > 0
        # the seed's confidence: min(1, n/100) x recency (just now: 1)
        assert fast_code.confidence == pytest.approx(0.04, rel=1e-3)

        overall = signal.performance("fast", None)
        assert overall.samples == 5
        assert signal.performance("fast", "chat").samples == 1
        assert signal.performance("fast", "never") is None

        report = moe.trackers["performance"].report("fast")
        assert report["overall"]["prompt_tokens"] == 4 * 3 + 1
        assert set(report["tasks"]) == {"code", "chat"}


async def test_figures_survive_a_restart_with_sqlite(tmp_path):
    config = tracked(EXPERTS, tmp_path=tmp_path, store="sqlite")
    async with make_moe(config) as moe:
        await moe.complete(ask(model="fast"))
    async with make_moe(config) as moe:
        [signal] = find_signals(moe.trackers, PerformanceSignal)
        view = signal.performance("fast", None)
        assert view is not None and view.samples == 1 and view.latency_p95_ms is not None


async def test_routing_stats_and_expert_report_over_http(gateway):
    client = await gateway(tracked(EXPERTS))
    for model in ("fast", "fast", "flaky"):
        await client.post("/v1/chat/completions", json=ask("hi", model=model))
    stats = await (await client.get("/v1/routing/stats")).json()
    assert stats["total_requests"] == 3
    assert stats["expert_distribution"] == {"fast": 2, "flaky": 1}
    assert stats["strategy_distribution"] == {"single": 3}  # each request named its expert
    assert stats["failed_requests"] == 0  # flaky fell back to fast
    assert stats["avg_confidence"] == 1.0
    assert stats["total_cost_usd"] == pytest.approx(3 * (1 * 1.0 + 1 * 2.0) / 1000)

    report = await (await client.get("/v1/experts/flaky/report")).json()
    assert report["performance"]["calls"] == 1 and report["performance"]["success_rate"] == 0
    assert report["card"]["provider"] == "echo"
    assert report["circuit_breaker"]["state"] == "closed"
    assert report["learned_weight"] == 1.0

    missing = await client.get("/v1/experts/nobody/report")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "expert_not_found"


async def test_every_tracker_reports_in_the_admin_stats(gateway):
    trackers = {
        **TRACKERS,
        "limits": {"kind": "rate-limit", "per_key": {"requests_per_minute": 100}},
    }
    client = await gateway(tracked(EXPERTS, trackers=trackers))
    await client.post("/v1/chat/completions", json=ask("hi", model="flaky"))
    stats = await (await client.get("/-/stats")).json()
    assert stats["performance"]["routing"]["total_requests"] == 1
    assert stats["performance"]["experts"]["fast"]["overall"]["calls"] == 1
    # flaky failed once, then fast answered: flaky's own breaker counts one failure
    flaky = stats["breaker"]["breakers"]["flaky"]
    assert flaky["state"] == "closed" and flaky["consecutive_failures"] == 1
    assert "'flaky' failed" in flaky["last_error"]
    assert stats["limits"]["per_key"]["requests_per_minute"] == 100
    assert stats["ab-tests"] == {"tests": []}
    assert stats["feedback"] == {}
