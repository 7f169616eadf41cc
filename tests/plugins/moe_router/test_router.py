"""MoERouter: the seed's blocking Python API, backed by the same gateway and trackers."""

from __future__ import annotations

import pytest

from moe_core.errors import InvalidRequest
from moe_core.plugins import create_plugin_manager
from moe_core.testing import testing_plugin
from moe_router import MoERouter, RoutingRequest
from tests.plugins.moe_tracking.conftest import REDIS_URL, TRACKERS

CONFIG = {
    "experts": {
        "claude-haiku": {"kind": "echo", "card": {"provider": "anthropic"}},
        "gpt-mini": {"kind": "echo", "card": {"provider": "openai"}},
    },
    "trackers": TRACKERS,
}


def router(tmp_path, **kwargs) -> MoERouter:
    config = {**CONFIG, "tracking": {"store": "sqlite", "path": str(tmp_path / "t.sqlite3")}}
    manager = create_plugin_manager(plugins=[("testing", testing_plugin)])
    return MoERouter(config=config, plugin_manager=manager, **kwargs)


def test_select_model_builds_the_canonical_request_and_asks_the_gate(tmp_path):
    request = RoutingRequest(
        task_type="code_generation",
        task_description="Add logging to existing API endpoint",
        cost_budget=0.001,
        quality_requirement=0.7,
        requires_tools=True,
        context_size=2000,
    )
    chat = request.to_chat_request()
    assert chat.last_user_text() == "Add logging to existing API endpoint"
    assert chat.hints.task_type == "code_generation" and chat.hints.budget_usd == 0.001
    assert chat.hints.metadata == {"requires_tools": True, "context_size": 2000}
    with router(tmp_path) as moe_router:
        decision = moe_router.select_model(request)
        assert decision.experts == ["claude-haiku"]
        assert decision.gate == "fixed" and decision.rationale


def test_feedback_ab_tests_breakers_and_stats_from_python(tmp_path):
    with router(tmp_path) as moe_router:
        response = moe_router.complete(
            RoutingRequest(task_type="code", task_description="write a parser")
        )
        stored = moe_router.record_feedback(response.id, outcome="success", pr_merged=True)
        assert stored["expert"] == "claude-haiku" and stored["task_type"] == "code"
        assert moe_router.learned_weight("claude-haiku", "code") == pytest.approx(1.1)
        with pytest.raises(ValueError, match="rating"):
            moe_router.record_feedback(response.id, rating=9)

        test_id = moe_router.start_ab_test("claude-haiku", "gpt-mini", task_type="code")
        analysis = moe_router.analyze_ab_test(test_id)
        assert analysis["winner"] is None and "not enough samples" in analysis["recommendation"]
        with pytest.raises(InvalidRequest, match="not a configured expert"):
            moe_router.start_ab_test("claude-haiku", "nobody")

        assert moe_router.get_circuit_breaker_status() == {}
        assert moe_router.reset_circuit_breaker("anthropic")["state"] == "closed"
        assert moe_router.get_circuit_breaker_status()["anthropic"]["state"] == "closed"

        stats = moe_router.get_routing_stats()
        assert stats["total_requests"] == 1
        assert stats["expert_distribution"] == {"claude-haiku": 1}
        report = moe_router.get_expert_report("claude-haiku")
        assert report["overall"]["calls"] == 1 and report["feedback"]["feedback"] == 1


def test_two_routers_on_one_redis_share_what_they_learn(tmp_path, redis_prefix):
    with (
        router(tmp_path, redis_url=REDIS_URL, redis_prefix=redis_prefix) as one,
        router(tmp_path, redis_url=REDIS_URL, redis_prefix=redis_prefix) as two,
    ):
        assert one.moe.config.section("tracking").store == "redis"
        response = one.complete(RoutingRequest(task_type="code", task_description="hi"))
        two.record_feedback(response.id, outcome="failure")
        assert two.learned_weight("claude-haiku", "code") == pytest.approx(0.9)
        test_id = two.start_ab_test("claude-haiku", "gpt-mini")
        assert one.analyze_ab_test(test_id)["id"] == test_id
        assert one.get_routing_stats()["total_requests"] == 1
        assert two.get_routing_stats()["total_requests"] == 1
