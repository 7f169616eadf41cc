"""The seed README's five example selection flows, over the example 20-model registry.

Each asserts which model wins and why (the rationale and the evidence trail), and which models
were filtered out and by what.
"""

from __future__ import annotations

import pytest

from moe_core.testing import make_moe
from moe_router.cost import CHARS_PER_TOKEN
from tests.plugins.moe_router.fakes import fake_signals_plugin
from tests.plugins.moe_router.helpers import ask, evidence, filtered, registry_config, registry_moe


async def test_budget_constrained_code_generation_picks_a_cheap_capable_model():
    moe = registry_moe()
    request = ask(
        "Add logging to existing API endpoint",
        task_type="code_generation",
        budget_usd=0.001,
        quality_requirement=0.7,
    )
    decision = await moe.route(request)

    assert decision.experts == ["gpt-4o-mini"]
    assert "a budget choice for code_generation" in decision.rationale
    assert "estimated cost $0.000242" in decision.rationale
    removed = filtered(decision)
    for expensive in ("claude-opus-4", "claude-sonnet-4", "o1", "gpt-4o", "gpt-5"):
        assert removed[expensive] == "budget"
    assert removed["command-r"] == "capabilities"  # no code capability
    assert removed["gemini-2.0-flash-thinking"] == "disabled"
    # The cheapest model is the first fallback; every fallback fits the budget.
    assert decision.fallbacks[0] == "gemini-flash-1.5"
    assert all(name not in removed for name in decision.fallbacks)
    [cost] = evidence(decision, "cost")
    assert cost["expert"] == "gpt-4o-mini"
    assert cost["within_budget"] is True
    assert cost["min_usd"] < cost["expected_usd"] <= 0.001
    # The gate caps the answer so that even its longest possible answer stays within budget,
    # which is what the gateway checks before it calls an expert.
    cap = decision.overrides["max_tokens"]
    prompt_tokens = len(request["messages"][0]["content"]) / CHARS_PER_TOKEN
    assert (prompt_tokens * 0.00015 + cap * 0.0006) / 1000 <= 0.001
    assert cost["max_usd"] <= 0.001

    async with moe:
        response = await moe.complete(request)
    assert response.metadata.experts_used == ["gpt-4o-mini"]


async def test_high_quality_reasoning_runs_the_best_models_in_parallel_within_budget():
    moe = registry_moe()
    request = ask(
        "Design a distributed system architecture for high availability",
        task_type="reasoning",
        quality_requirement=0.95,
        budget_usd=0.10,
    )
    decision = await moe.route(request)

    # The seed's triggers fire twice: reasoning is a critical task type, and quality >= 0.9
    # comes with a budget >= $0.05.
    [parallel] = evidence(decision, "parallel")
    assert parallel["triggers"] == [
        "task type reasoning is critical",
        "quality requirement 0.95 >= 0.9 with budget $0.1 >= $0.05",
    ]
    assert decision.experts == ["claude-opus-4", "o1", "claude-sonnet-4"]
    assert decision.strategy == "judge"
    assert decision.judge == "gpt-5"
    assert parallel["estimated_cost_usd"] <= 0.10
    assert decision.overrides["max_tokens"] >= 600  # room for a full answer from each
    assert "ranks for quality" in decision.rationale
    removed = filtered(decision)
    assert removed["gpt-5"] == "quality floor"
    assert removed["gemini-pro-1.5"] == "quality floor"

    # The gateway's budget check before each call lets all four calls through.
    async with moe:
        response = await moe.complete(request)
    assert sorted(response.metadata.experts_used) == sorted([*decision.experts, "gpt-5"])
    assert response.metadata.fallbacks == []
    assert response.metadata.cost_usd <= 0.10


async def test_high_quality_reasoning_as_a_single_model_when_the_caller_names_one_strategy():
    decision = await registry_moe().route(
        ask(
            "Design a distributed system architecture for high availability",
            task_type="reasoning",
            quality_requirement=0.95,
            budget_usd=0.10,
            strategy="single",
        )
    )
    assert decision.experts == ["claude-opus-4"]
    assert decision.strategy == "single"
    assert decision.fallbacks[0] == "o1"  # another provider first
    assert "Selected claude-opus-4 for reasoning" in decision.rationale
    assert "quality 0.98" in decision.rationale
    assert "preferred for reasoning" in decision.rationale


async def test_critical_security_audit_runs_three_providers_and_a_judge_end_to_end():
    config = registry_config()
    config["experts"] = {"gpt-5": {"kind": "echo", "reply": "Best: 2. It covers the webhooks."}}
    moe = make_moe(config, plugins=[fake_signals_plugin])
    request = ask(
        "Comprehensive security audit of payment processing system",
        task_type="security_audit",
        quality_requirement=0.95,
        metadata={"enable_parallel": True},
    )
    decision = await moe.route(request)

    assert decision.experts == ["claude-opus-4", "o1", "claude-sonnet-4"]
    assert decision.judge == "gpt-5"
    assert decision.strategy == "judge"
    [parallel] = evidence(decision, "parallel")
    assert parallel["providers"] == ["anthropic", "openai", "anthropic"]
    assert parallel["expected_quality"] == 0.98
    assert parallel["triggers"][0] == "the request asked for parallel execution"
    assert decision.rationale.startswith(
        "Parallel execution with 3 experts (claude-opus-4, o1, claude-sonnet-4) for security_audit"
    )
    assert "Judge gpt-5 (quality 0.94) picks the best answer" in decision.rationale

    async with moe:
        response = await moe.complete(request)
    assert response.metadata.strategy == "judge"
    assert sorted(response.metadata.experts_used) == sorted([*decision.experts, "gpt-5"])
    assert any("the judge picked o1" in note for note in response.metadata.notes)


async def test_long_context_analysis_picks_a_model_whose_window_fits():
    decision = await registry_moe().route(
        ask(
            "Analyze 50k lines of code for technical debt",
            task_type="long_context",
            quality_requirement=0.85,
            metadata={"context_tokens": 150_000},
        )
    )
    assert decision.experts == ["gemini-pro-1.5"]
    assert "2,097,152-token context window" in decision.rationale
    assert "preferred for long_context" in decision.rationale
    removed = filtered(decision)
    for small in ("gpt-4o", "mistral-large-2", "deepseek-v3", "command-r-plus"):
        assert removed[small] == "context window"
    assert removed["claude-haiku-4"] == "quality floor"  # its 200k window fits
    assert decision.runner_up == "claude-sonnet-4"
    [cost] = evidence(decision, "cost")
    assert cost["input_tokens"] == 150_000
    assert cost["expected_usd"] == pytest.approx(150 * 0.00125 + 1 * 0.005)


async def test_fast_multimodal_picks_a_vision_model_within_the_latency_ceiling():
    request = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Analyze this UI screenshot for accessibility"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0"}},
                ],
            }
        ],
        "moe": {
            "task_type": "multimodal",
            "latency_requirement_ms": 2000,
            "quality_requirement": 0.85,
        },
    }
    decision = await registry_moe().route(request)

    assert decision.experts == ["gpt-4o"]
    assert "supports vision" in decision.rationale
    assert "p95 latency 1500 ms" in decision.rationale
    removed = filtered(decision)
    assert removed["claude-sonnet-4"] == "latency ceiling"  # p95 3000 ms
    assert removed["pixtral-large"] == "latency ceiling"  # p95 2600 ms
    assert removed["claude-haiku-4"] == "quality floor"  # 0.80
    skipped = decision.rationale.split("skipped ")[1]  # no vision: the core skips them
    assert "mistral-large-2" in skipped
    assert "deepseek-v3" in skipped
    [summary] = evidence(decision, "request")
    assert summary["requires"] == ["vision"]
    assert summary["input_tokens"] > 765  # the image is counted
