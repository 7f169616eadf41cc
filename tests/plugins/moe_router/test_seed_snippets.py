"""The README snippets users of the older router library know, run unchanged as user code.

Each snippet is executed as a script would run it, top to bottom in one namespace, against a
gateway configured by ``$MOE_CONFIG``: the example 20-model registry routed by the
``multi-factor`` gate (as ``examples/multi-factor.yaml`` configures it), with the tracking
trackers keeping their state in the real Redis under a key prefix of this test's own. Only the
``...`` placeholders of the snippets are filled in. No expert is ever called: routing decisions,
feedback, A/B tests and cost predictions need none (the experts point at a closed port).
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from moe_core.models import RoutingDecision

EXAMPLES = Path(__file__).parents[3] / "examples"
REGISTRY_IDS = {
    model["id"] for model in yaml.safe_load((EXAMPLES / "registry.yaml").read_text())["models"]
}

BASIC_USAGE = """
from moe_router import MoERouter, RoutingRequest, TaskType

# Initialize router
router = MoERouter(
    redis_url="redis://localhost:6379",
    enable_learning=True
)

# Create routing request
request = RoutingRequest(
    task_type=TaskType.CODE_GENERATION,
    task_description="Implement a REST API endpoint for user authentication",
    cost_budget=0.01,  # $0.01 max
    quality_requirement=0.8,
    requires_tools=True
)

# Get model selection
decision = router.select_model(request)

print(f"Selected: {decision.selected_model}")
print(f"Rationale: {decision.rationale}")
print(f"Estimated Cost: ${decision.estimated_cost:.6f}")
print(f"Confidence: {decision.confidence:.2f}")
print(f"Fallbacks: {decision.fallback_models}")
"""

PARALLEL_EXECUTION = """
# Request parallel execution for critical task
request = RoutingRequest(
    task_type=TaskType.SECURITY_AUDIT,
    task_description="Audit authentication system for vulnerabilities",
    quality_requirement=0.95,
    enable_parallel=True
)

decision = router.select_model(request)

# Decision includes multiple models
print(f"Parallel Models: {decision.parallel_models}")
print(f"Judge Model: {decision.metadata['judge_model']}")
"""

RECORDING_FEEDBACK = """
from moe_router import FeedbackData

# After task completion, record feedback
feedback = FeedbackData(
    request_id="req_123",
    model_id="claude-sonnet-4",
    task_type=TaskType.CODE_GENERATION,
    outcome="success",
    quality_score=0.92,
    actual_cost=0.00234,
    actual_latency_ms=1200,
    pr_merged=True,
    user_rating=5
)

router.learning_loop.collect_feedback(feedback)
"""

PERFORMANCE_TRACKING = """
# Get performance metrics
metrics = router.performance_tracker.get_metrics(
    model_id="claude-sonnet-4",
    task_type=TaskType.CODE_GENERATION
)

print(f"Success Rate: {metrics.success_rate:.2%}")
print(f"Avg Latency: {metrics.avg_latency_ms}ms")
print(f"Avg Cost: ${metrics.avg_cost:.6f}")
print(f"Total Requests: {metrics.total_requests}")

# Get recommendation weight
weight = router.performance_tracker.get_recommendation_weight(
    model_id="claude-sonnet-4",
    task_type=TaskType.CODE_GENERATION
)
print(f"Recommendation Weight: {weight:.2f}")  # 0-1 scale
"""

FEEDBACK_WITH_PR_OUTCOME = """
# Record feedback with PR outcome
feedback = FeedbackData(
    request_id="req_456",
    model_id="gpt-4o",
    task_type=TaskType.CODE_REVIEW,
    outcome="success",
    quality_score=0.88,
    pr_merged=True,
    pr_reverted=False,
    user_rating=4
)

router.learning_loop.collect_feedback(feedback)
"""

AB_TESTING = """
# Start A/B test
test_id = router.learning_loop.start_ab_test(
    model_a="claude-sonnet-4",
    model_b="gpt-4o",
    task_type=TaskType.CODE_GENERATION,
    traffic_split=0.5,
    min_samples=30,
    duration_days=7
)

# ... let test run ...

# Analyze results
results = router.learning_loop.analyze_ab_test(test_id)
print(f"Winner: {results['winner']}")
print(f"Confidence: {results['confidence']:.1%}")
print(f"Recommendation: {results['recommendation']}")
"""

CIRCUIT_BREAKER = """
# Check circuit breaker status
status = router.get_circuit_breaker_status()
print(status)

# Manually reset if needed
router.reset_circuit_breaker("anthropic")
"""

COST_PREDICTION = """
from moe_router import CostPredictor

predictor = CostPredictor()

# Estimate tokens from description
input_tokens, output_tokens = predictor.estimate_tokens_from_description(
    description="Implement user authentication with JWT",
    task_type=TaskType.CODE_GENERATION
)

# Predict cost for specific model
model = router._get_model_by_id("claude-sonnet-4")
prediction = predictor.predict_cost(model, request)

print(f"Estimated Input: {prediction.estimated_input_tokens} tokens")
print(f"Estimated Output: {prediction.estimated_output_tokens} tokens")
print(f"Cost Range: ${prediction.min_cost:.6f} - ${prediction.max_cost:.6f}")
print(f"Expected Cost: ${prediction.expected_cost:.6f}")
print(f"Within Budget: {prediction.within_budget}")
"""

BUDGET_CODE_GENERATION = """
request = RoutingRequest(
    task_type=TaskType.CODE_GENERATION,
    task_description="Add logging to existing API endpoint",
    cost_budget=0.001,  # Very tight budget
    quality_requirement=0.7
)

decision = router.select_model(request)
"""

HIGH_QUALITY_REASONING = """
request = RoutingRequest(
    task_type=TaskType.REASONING,
    task_description="Design a distributed system architecture for high availability",
    quality_requirement=0.95,
    cost_budget=0.10
)

decision = router.select_model(request)
"""

CRITICAL_SECURITY_AUDIT = """
request = RoutingRequest(
    task_type=TaskType.SECURITY_AUDIT,
    task_description="Comprehensive security audit of payment processing system",
    quality_requirement=0.95,
    enable_parallel=True
)

decision = router.select_model(request)
"""

LONG_CONTEXT_ANALYSIS = """
request = RoutingRequest(
    task_type=TaskType.LONG_CONTEXT,
    task_description="Analyze 50k lines of code for technical debt",
    context_size=150000,  # 150k tokens
    quality_requirement=0.85
)

decision = router.select_model(request)
"""

FAST_MULTIMODAL = """
request = RoutingRequest(
    task_type=TaskType.MULTIMODAL,
    task_description="Analyze UI screenshot and generate accessibility report",
    requires_vision=True,
    latency_requirement_ms=2000,
    quality_requirement=0.85
)

decision = router.select_model(request)
"""

ROUTING_STATISTICS = """
stats = router.get_routing_stats()
print(stats)
"""

PERFORMANCE_REPORT = """
report = router.learning_loop.get_model_performance_report(
    model_id="claude-sonnet-4",
    task_type=TaskType.CODE_GENERATION
)
print(report)
"""

CUSTOM_MODELS_YAML = """
# custom_models.yaml
models:
  - id: custom-model-1
    provider: custom
    capabilities:
      - code
      - reasoning
    cost_per_1k_input: 0.001
    cost_per_1k_output: 0.003
    context_window: 100000
    quality_score: 0.85
    enabled: true
"""

CUSTOM_REGISTRY = """
router = MoERouter(config_path="custom_models.yaml")
"""


class Script:
    """One user's script: snippets run in turn in one namespace, their output kept."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.routers: list[Any] = []
        self.printed = ""
        """What the first snippet printed."""

    def run(self, snippet: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(textwrap.dedent(snippet), "<snippet>", "exec"), self.namespace)
        router = self.namespace.get("router")
        if router is not None and all(router is not seen for seen in self.routers):
            self.routers.append(router)
        return out.getvalue()

    def __getitem__(self, name: str) -> Any:
        return self.namespace[name]


@pytest.fixture
def script(redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Script]:
    """A script that has run the basic-usage snippet (so ``router`` and ``TaskType`` exist),
    with ``$MOE_CONFIG`` pointing at the registry and multi-factor gate of the examples."""
    config = yaml.safe_load((EXAMPLES / "multi-factor.yaml").read_text())
    config["registry"]["path"] = str(EXAMPLES / "registry.yaml")
    # Never called, so neither a listening upstream nor its key is needed.
    config["registry"]["experts"]["base_url"] = "http://127.0.0.1:9/v1"
    config["registry"]["experts"].pop("api_key_env")
    config["trackers"] = {
        "performance": {"kind": "performance"},
        "breaker": {"kind": "circuit-breaker"},
        "feedback": {"kind": "feedback"},
        "ab-tests": {"kind": "ab-tests"},
    }
    config["tracking"] = {"prefix": redis_prefix}
    path = tmp_path / "moe.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("MOE_CONFIG", str(path))
    made = Script()
    made.printed = made.run(BASIC_USAGE)
    yield made
    for router in made.routers:
        router.close()


def card(script: Script, model_id: str) -> Any:
    return script["router"].get_model(model_id)


def test_basic_usage_selects_a_capable_registry_model_within_the_budget(script):
    decision = script["decision"]
    assert isinstance(decision, RoutingDecision)  # the gateway's own decision, under more names
    assert decision.selected_model in REGISTRY_IDS
    chosen = card(script, decision.selected_model)
    assert chosen.supports_tools and chosen.quality >= 0.8 and "code" in chosen.capabilities
    assert decision.fallback_models and decision.selected_model not in decision.fallback_models
    assert set(decision.fallback_models) <= REGISTRY_IDS
    assert isinstance(decision.estimated_cost, float) and 0 < decision.estimated_cost <= 0.01
    assert 0 <= decision.confidence <= 1
    printed = script.printed
    assert f"Selected: {decision.selected_model}\n" in printed
    assert f"Rationale: Selected {decision.selected_model} for code_generation" in printed
    assert f"Estimated Cost: ${decision.estimated_cost:.6f}\n" in printed
    assert f"Fallbacks: {decision.fallback_models}\n" in printed


def test_parallel_execution_names_several_providers_and_a_judge(script):
    printed = script.run(PARALLEL_EXECUTION)
    decision = script["decision"]
    models, judge = decision.parallel_models, decision.metadata["judge_model"]
    assert len(models) == 3 and len(set(models)) == 3 and set(models) <= REGISTRY_IDS
    assert len({card(script, model).provider for model in models}) >= 2
    assert judge in REGISTRY_IDS and judge not in models
    assert decision.selected_model == models[0] and decision.estimated_cost > 0
    assert printed == f"Parallel Models: {models}\nJudge Model: {judge}\n"


def test_feedback_raises_the_weight_and_shows_in_the_metrics(script):
    before = script.run(PERFORMANCE_TRACKING)
    assert "Total Requests: 0\n" in before and "Recommendation Weight: 0.50\n" in before
    neutral = script["weight"]

    assert script.run(RECORDING_FEEDBACK) == ""
    printed = script.run(PERFORMANCE_TRACKING)

    metrics = script["metrics"]
    assert metrics.total_requests == 1 and metrics.success_rate == 1.0
    assert metrics.source == "feedback" and metrics.avg_quality == pytest.approx(0.92)
    assert script["weight"] > neutral
    assert "Success Rate: 100.00%\n" in printed and "Total Requests: 1\n" in printed
    assert f"Recommendation Weight: {script['weight']:.2f}\n" in printed
    # Stored in the shared store: the feedback tracker's log keeps it for every instance.
    assert script["router"].learned_weight("claude-sonnet-4", "code_generation") > 1.0

    script.run(FEEDBACK_WITH_PR_OUTCOME)
    loop = script["router"].learning_loop
    assert loop.get_model_weight("gpt-4o", script["TaskType"].CODE_REVIEW) > 0.5
    assert loop.get_model_weight("gpt-4o", "code_generation") == 0.5  # another task type


def test_performance_report_has_what_feedback_said(script):
    script.run(RECORDING_FEEDBACK)
    printed = script.run(PERFORMANCE_REPORT)
    report = script["report"]
    assert report["model_id"] == "claude-sonnet-4" and report["task_type"] == "code_generation"
    assert report["total_requests"] == 1 and report["success_rate"] == 1.0
    assert report["pr_merge_rate"] == 1.0 and report["pr_revert_rate"] == 0.0
    assert report["avg_quality"] == pytest.approx(0.92) and report["avg_rating"] == 5.0
    assert report["learned_weight"] > 0.5  # 0..1, 0.5 neutral
    # Feedback measures neither: only the calls the gateway makes do.
    assert report["avg_cost"] is None and report["avg_latency_ms"] is None
    assert printed == f"{report}\n"


def test_ab_test_analysis_says_who_wins_how_surely_and_what_to_do(script):
    printed = script.run(AB_TESTING)
    results = script["results"]
    assert results["test_id"] == script["test_id"]
    assert (results["model_a"], results["model_b"]) == ("claude-sonnet-4", "gpt-4o")
    assert results["task_type"] == "code_generation" and results["status"] == "running"
    # No traffic yet: no winner, no confidence, and the advice to keep the test running.
    assert results["winner"] is None and results["confidence"] == 0.0
    assert "not enough samples" in results["recommendation"]
    assert printed == (
        f"Winner: None\nConfidence: 0.0%\nRecommendation: {results['recommendation']}\n"
    )
    # Here the split is the share of model_a; the gateway stores the share of model_b.
    loop = script["router"].learning_loop
    other = loop.start_ab_test("claude-haiku-4", "gpt-4o-mini", traffic_split=0.8)
    assert loop.analyze_ab_test(other)["traffic_split"] == pytest.approx(0.2)


def test_cost_prediction_estimates_tokens_and_a_cost_range(script):
    printed = script.run(COST_PREDICTION)
    assert script["input_tokens"] > 0 and script["output_tokens"] > 0
    prediction = script["prediction"]
    assert prediction.model_id == "claude-sonnet-4"
    assert prediction.estimated_input_tokens > 0 and prediction.estimated_output_tokens > 0
    assert 0 < prediction.min_cost <= prediction.expected_cost <= prediction.max_cost
    # The request of the basic usage: budget $0.01.
    assert prediction.within_budget is True and prediction.expected_cost <= 0.01
    assert f"Expected Cost: ${prediction.expected_cost:.6f}\n" in printed
    assert printed.endswith("Within Budget: True\n")
    # A decision that names the model predicts the same cost for the same request.
    chat = script["request"].to_chat_request()
    chat.moe.force_expert = "claude-sonnet-4"
    forced = script["router"].select_model(chat)
    assert forced.estimated_cost == pytest.approx(prediction.expected_cost)


def _budget(script: Script) -> None:
    decision = script["decision"]
    assert card(script, decision.selected_model).quality >= 0.7
    assert 0 < decision.estimated_cost <= 0.001
    assert decision.parallel_models is None and decision.routing_strategy == "standard"


def _reasoning(script: Script) -> None:
    decision = script["decision"]  # reasoning is critical: several models and a judge
    assert len(decision.parallel_models) == 3
    assert all(card(script, model).quality >= 0.95 for model in decision.parallel_models)
    assert decision.metadata["judge_model"] in REGISTRY_IDS
    assert 0 < decision.estimated_cost <= 0.10  # answers and verdict together


def _security(script: Script) -> None:
    decision = script["decision"]
    assert len(decision.parallel_models) == 3 and decision.routing_strategy == "parallel"
    assert decision.metadata["judge_model"] not in decision.parallel_models
    assert decision.rationale.startswith("Parallel execution with 3 experts")


def _long_context(script: Script) -> None:
    decision = script["decision"]
    assert card(script, decision.selected_model).context_window >= 150_000
    assert decision.estimated_cost > 150 * card(script, decision.selected_model).cost_per_1k_input


def _multimodal(script: Script) -> None:
    chosen = card(script, script["decision"].selected_model)
    assert chosen.supports_vision and chosen.latency_p95_ms <= 2000 and chosen.quality >= 0.85


@pytest.mark.parametrize(
    ("snippet", "check"),
    [
        (BUDGET_CODE_GENERATION, _budget),
        (HIGH_QUALITY_REASONING, _reasoning),
        (CRITICAL_SECURITY_AUDIT, _security),
        (LONG_CONTEXT_ANALYSIS, _long_context),
        (FAST_MULTIMODAL, _multimodal),
    ],
    ids=["budget", "reasoning", "security-audit", "long-context", "multimodal"],
)
def test_example_selection_flows(script, snippet, check):
    assert script.run(snippet) == ""
    decision = script["decision"]
    assert decision.selected_model in REGISTRY_IDS and decision.rationale
    assert decision.selected_model not in decision.fallback_models
    check(script)


def test_circuit_breakers_can_be_read_and_reset(script):
    printed = script.run(CIRCUIT_BREAKER)
    assert printed == "{}\n"  # nothing has failed yet
    assert script["router"].get_circuit_breaker_status()["anthropic"]["state"] == "closed"


def test_routing_statistics_print(script):
    printed = script.run(ROUTING_STATISTICS)
    stats = script["stats"]
    # select_model only asks the gate: statistics count requests the gateway answered.
    assert stats["total_requests"] == 0 and stats["expert_distribution"] == {}
    assert printed == f"{stats}\n"


def test_a_bare_model_registry_file_is_a_configuration(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "custom_models.yaml").write_text(CUSTOM_MODELS_YAML)
    script.run(CUSTOM_REGISTRY)
    router = script["router"]
    assert list(router.moe.experts) == ["custom-model-1"]
    assert router.get_model("custom-model-1").cost_per_1k_output == 0.003
    script.run(
        "decision = router.select_model(RoutingRequest(task_type=TaskType.REASONING, "
        "task_description='Plan a migration'))"
    )
    decision = script["decision"]
    assert decision.selected_model == "custom-model-1" and decision.estimated_cost > 0


def test_a_router_that_does_not_learn_refuses_feedback(script):
    from moe_router import FeedbackData, LearningDisabled, MoERouter

    with MoERouter(redis_url="redis://localhost:6379", enable_learning=False) as router:
        feedback = FeedbackData(request_id="req_789", model_id="gpt-4o", outcome="failure")
        with pytest.raises(LearningDisabled, match="enable_learning=False"):
            router.learning_loop.collect_feedback(feedback)
        assert router.learned_weight("gpt-4o") == 1.0  # nothing was learned
        assert router.select_model(script["request"]).selected_model in REGISTRY_IDS
