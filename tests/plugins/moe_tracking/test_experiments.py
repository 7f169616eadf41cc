"""A/B tests: deterministic assignment that a gate follows, outcomes per arm, a real analysis."""

from __future__ import annotations

from collections import Counter

import pytest

from moe_core import Gate, RoutingDecision, hookimpl
from moe_core.models import ChatRequest
from moe_core.signals import ExperimentSignal, find_signals
from moe_core.testing import make_moe
from moe_tracking.experiments import ABTestSpec
from moe_tracking.feedback import Feedback
from tests.plugins.moe_tracking.conftest import ask, tracked


class FollowExperiments(Gate):
    """What any gate does with the signal: take the experiment's pick when there is one."""

    async def route(self, request, experts, signals):
        task = request.hints.task_type
        for experiments in find_signals(signals, ExperimentSignal):
            chosen = experiments.assignment(request, task)
            if chosen is not None:
                return RoutingDecision(experts=[chosen], rationale="A/B test assignment")
        return RoutingDecision(experts=[next(iter(experts))], rationale="default")


class Plugin:
    @hookimpl
    def moe_register_gates(self, register):
        register("follow-experiments", FollowExperiments)


EXPERTS = {
    "incumbent": {"kind": "echo", "prefix": "A: "},
    "challenger": {"kind": "echo", "prefix": "B: "},
}


def ab_gateway(tmp_path=None, store="memory"):
    config = tracked(EXPERTS, tmp_path=tmp_path, store=store, gate={"kind": "follow-experiments"})
    return make_moe(config, plugins=[("follow", Plugin())])


async def test_assignment_is_deterministic_and_follows_the_split():
    moe = ab_gateway()
    async with moe:
        tests = moe.trackers["ab-tests"]
        spec = ABTestSpec(
            expert_a="incumbent", expert_b="challenger", task_type="code", traffic_split=0.2
        )
        await tests.start_test(spec, set(moe.experts))
        users = [ChatRequest.model_validate(ask("x", user=f"user-{i}")) for i in range(4000)]
        arms = Counter(tests.assignment(request, "code") for request in users)
        assert arms["challenger"] / 4000 == pytest.approx(0.2, abs=0.02)
        assert [tests.assignment(r, "code") for r in users[:50]] == [
            tests.assignment(r, "code") for r in users[:50]
        ]
        assert tests.assignment(users[0], "other-task") is None


async def test_the_gate_routes_by_assignment_and_outcomes_count_per_arm():
    moe = ab_gateway()
    async with moe:
        tests = moe.trackers["ab-tests"]
        spec = ABTestSpec(expert_a="incumbent", expert_b="challenger", task_type="code")
        test = await tests.start_test(spec, set(moe.experts))
        seen = Counter()
        for i in range(40):
            response = await moe.complete(ask("q", user=f"u{i}", moe={"task_type": "code"}))
            seen[response.model] += 1
            again = await moe.complete(ask("q", user=f"u{i}", moe={"task_type": "code"}))
            assert again.model == response.model, "a user stays in one arm"
        await moe.complete(ask("q", moe={"task_type": "chat"}))  # not part of the test
        described = tests.describe(test["id"])
        assert described["samples"] == {"a": 2 * seen["incumbent"], "b": 2 * seen["challenger"]}
        assert seen["incumbent"] and seen["challenger"]


async def test_analysis_names_a_significant_winner_from_feedback(tmp_path):
    moe = ab_gateway(tmp_path, store="sqlite")
    async with moe:
        tests = moe.trackers["ab-tests"]
        spec = ABTestSpec(
            expert_a="incumbent", expert_b="challenger", task_type="code", min_samples=10
        )
        test_id = (await tests.start_test(spec, set(moe.experts)))["id"]
        early = await tests.analyse(test_id)
        assert early["winner"] is None and "not enough samples" in early["recommendation"]

        for i in range(80):
            response = await moe.complete(ask("q", user=f"u{i}", moe={"task_type": "code"}))
            good = response.model == "challenger"
            quality = (0.9 if good else 0.6) + (i % 5) * 0.02
            stored = await moe.trackers["feedback"].record(
                Feedback(request_id=response.id, quality_score=quality), set(moe.experts)
            )
            await tests.on_feedback(stored["request_id"], stored["score"])
        result = await tests.analyse(test_id)
        assert result["winner"] == "challenger"
        assert result["decided_by"] == "feedback_score"
        assert result["tests"]["feedback_score"]["test"] == "Welch's t-test"
        assert result["tests"]["feedback_score"]["p_value"] < 0.001
        assert result["confidence"] > 0.999
        assert "Route code traffic to challenger" in result["recommendation"]
        assert result["arms"]["b"]["avg_feedback_score"] == pytest.approx(0.94, abs=0.01)


async def test_no_winner_without_a_significant_difference():
    moe = ab_gateway()
    async with moe:
        tests = moe.trackers["ab-tests"]
        spec = ABTestSpec(expert_a="incumbent", expert_b="challenger", min_samples=5)
        test_id = (await tests.start_test(spec, set(moe.experts)))["id"]
        for i in range(30):
            await moe.complete(ask("q", user=f"u{i}"))
        result = await tests.analyse(test_id)
        assert result["winner"] is None
        assert result["tests"]["success_rate"]["p_value"] == 1.0
        assert "No significant difference in success rate" in result["recommendation"]


async def test_ab_test_endpoints(gateway):
    client = await gateway(
        tracked(EXPERTS, gate={"kind": "follow-experiments"}), plugins=[("follow", Plugin())]
    )
    started = await client.post(
        "/v1/ab-tests",
        json={"expert_a": "incumbent", "expert_b": "challenger", "task_type": "code",
              "traffic_split": 0.5, "min_samples": 3, "duration_days": 1},
    )  # fmt: skip
    assert started.status == 201
    test_id = (await started.json())["id"]
    for i in range(10):
        body = ask("q", user=f"u{i}", moe={"task_type": "code"})
        assert (await client.post("/v1/chat/completions", json=body)).status == 200
    listed = await (await client.get("/v1/ab-tests")).json()
    [only] = listed["data"]
    assert only["id"] == test_id and sum(only["samples"].values()) == 10
    analysis = await (await client.get(f"/v1/ab-tests/{test_id}")).json()
    assert analysis["status"] == "running" and "recommendation" in analysis
    stopped = await (await client.post(f"/v1/ab-tests/{test_id}/stop")).json()
    assert stopped["status"] == "stopped"
    response = await client.post(
        "/v1/chat/completions", json=ask("q", user="u1", moe={"task_type": "code"})
    )
    assert (await response.json())["moe_metadata"]["rationale"] == "default"

    assert (await client.get("/v1/ab-tests/ab-nope")).status == 404
    same = await client.post(
        "/v1/ab-tests", json={"expert_a": "incumbent", "expert_b": "incumbent"}
    )
    assert same.status == 400 and "must differ" in (await same.json())["error"]["message"]
    ghost = await client.post("/v1/ab-tests", json={"expert_a": "incumbent", "expert_b": "ghost"})
    assert ghost.status == 400 and (await ghost.json())["error"]["param"] == "expert_b"
    split = await client.post(
        "/v1/ab-tests", json={"expert_a": "incumbent", "expert_b": "challenger", "traffic_split": 1}
    )
    assert split.status == 400 and (await split.json())["error"]["param"] == "traffic_split"
