"""The multi-factor gate's filters, scores and overrides, with fake trackers for its signals."""

from __future__ import annotations

import pytest

from moe_core.errors import NoEligibleExpert
from moe_core.testing import make_moe
from tests.plugins.moe_router.fakes import fake_signals_plugin
from tests.plugins.moe_router.helpers import ask, evidence, filtered, registry_moe

CHEAP_CODE = {"task_type": "code_generation", "budget_usd": 0.001, "quality_requirement": 0.7}


async def test_an_open_circuit_removes_every_model_of_that_provider():
    moe = registry_moe(signals={"open_circuits": ["openai"]})
    decision = await moe.route(ask("Add logging to existing API endpoint", **CHEAP_CODE))

    assert decision.experts == ["gemini-flash-1.5"]
    removed = filtered(decision)
    for name in ("gpt-4o-mini", "gpt-4o", "gpt-5", "o1", "o1-mini"):
        assert removed[name] == "circuit open"
    assert "openai" not in {item["provider"] for item in evidence(decision, "score")}
    [circuits] = [
        item for item in evidence(decision, "filtered") if item["filter"] == "circuit open"
    ]
    assert circuits["experts"] == {
        name: "openai" for name in ("gpt-5", "gpt-4o", "gpt-4o-mini", "o1", "o1-mini")
    }
    [budget] = [item for item in evidence(decision, "filtered") if item["filter"] == "budget"]
    assert budget["limit"] == 0.001
    assert budget["basis"] == "expected cost"
    assert budget["experts"]["claude-opus-4"] > 0.001


async def test_an_open_circuit_for_one_expert_removes_only_it():
    moe = registry_moe(signals={"open_circuits": ["gpt-4o-mini"]})
    decision = await moe.route(ask("Add logging to existing API endpoint", **CHEAP_CODE))
    assert decision.experts == ["gemini-flash-1.5"]
    assert filtered(decision)["gpt-4o-mini"] == "circuit open"
    assert "o1-mini" not in filtered(decision) or filtered(decision)["o1-mini"] == "budget"


async def test_when_nothing_passes_the_error_says_which_filter_removed_which_model():
    moe = registry_moe(signals={"open_circuits": ["openai"]})
    request = ask(
        "Describe this screenshot",
        task_type="multimodal",
        quality_requirement=0.85,
        latency_requirement_ms=2000,
    )
    with pytest.raises(NoEligibleExpert) as caught:
        await moe.route(request)
    message = caught.value.message
    assert message.startswith("No expert meets this request's requirements (20 considered).")
    assert "; circuit open: gpt-5 (circuit open for openai), gpt-4o (circuit open" in message
    assert "claude-sonnet-4 (p95 3000 ms > 2000 ms)" in message
    assert "claude-haiku-4 (quality 0.8 < 0.85)" in message
    assert "mistral-large-2 (lacks vision)" in message
    assert "disabled: gemini-2.0-flash-thinking (disabled in its card)" in message
    assert caught.value.status == 400
    assert caught.value.envelope()["error"]["code"] == "no_eligible_expert"


async def test_an_ab_assignment_overrides_the_pick_and_says_so():
    moe = registry_moe(signals={"assign": "mistral-small-2"})
    decision = await moe.route(ask("Add logging to existing API endpoint", **CHEAP_CODE))
    assert decision.experts == ["mistral-small-2"]
    assert "An A/B test assigned this request to mistral-small-2" in decision.rationale
    [item] = evidence(decision, "experiment")
    assert item == {
        "kind": "experiment",
        "assigned": "mistral-small-2",
        "top_scored": "gpt-4o-mini",
        "applied": True,
    }
    assert decision.confidence == 0.5


async def test_an_ab_assignment_never_breaks_the_requests_constraints():
    moe = registry_moe(signals={"assign": "claude-opus-4"})  # far over this budget
    decision = await moe.route(ask("Add logging to existing API endpoint", **CHEAP_CODE))
    assert decision.experts == ["gpt-4o-mini"]
    assert "An A/B test assigned claude-opus-4, which did not pass the filters" in (
        decision.rationale
    )
    assert evidence(decision, "experiment")[0]["applied"] is False


async def test_history_and_learned_weights_move_the_pick():
    request = ask("Add logging to existing API endpoint", **CHEAP_CODE)
    failing = registry_moe(signals={"success_rates": {"gpt-4o-mini": 0.1}})
    assert (await failing.route(request)).experts == ["gemini-flash-1.5"]

    learned = registry_moe(signals={"weights": {"gemini-flash-1.5": 2.0}})
    decision = await learned.route(request)
    assert decision.experts == ["gemini-flash-1.5"]
    [score] = [s for s in evidence(decision, "score") if s["expert"] == "gemini-flash-1.5"]
    assert score["parts"]["learned"] == 7.0  # the full learned weight
    assert score["parts"]["performance"] == 5.0  # no history: neutral


async def test_vendor_preference_and_configured_weights():
    request = ask(
        "Add logging to existing API endpoint",
        **{**CHEAP_CODE, "metadata": {"vendor_preference": "google"}},
    )
    decision = await registry_moe().route(request)
    assert decision.experts == ["gemini-flash-1.5"]
    assert "preferred vendor google" in decision.rationale

    # With cost worth nothing, the best-quality model within budget wins.
    quality_only = registry_moe(gate={"weights": {"cost": 0}})
    assert (await quality_only.route(ask("x", **CHEAP_CODE))).experts == ["deepseek-r1"]


async def test_abilities_come_from_the_request_itself():
    request = ask("Extract the fields", task_type="general", quality_requirement=0.9)
    request["tools"] = [{"type": "function", "function": {"name": "save", "parameters": {}}}]
    request["response_format"] = {"type": "json_object"}
    decision = await registry_moe().route(request)
    assert evidence(decision, "request")[0]["requires"] == ["json", "tools"]
    # Experts that cannot honour tools or JSON output never reach the gate: the core skips
    # them for every gate and says so.
    skipped = decision.rationale.split("skipped ")[1]
    assert "claude-opus-4" in skipped  # no JSON mode
    assert "deepseek-r1" in skipped
    assert "cannot honour response_format, tools" in skipped
    assert "claude-opus-4" not in filtered(decision)
    assert decision.experts == ["o1"]


async def test_critical_metadata_triggers_parallel_and_a_small_budget_stops_it():
    request = ask(
        "Review this change",
        task_type="general",
        quality_requirement=0.85,
        metadata={"critical": True},
    )
    decision = await registry_moe().route(request)
    assert len(decision.experts) == 3
    assert len({e["provider"] for e in evidence(decision, "score")[:3]}) == 3
    assert decision.judge not in decision.experts
    assert evidence(decision, "parallel")[0]["triggers"] == ["moe.metadata.critical is true"]

    request["moe"]["budget_usd"] = 0.002
    decision = await registry_moe().route(request)
    assert len(decision.experts) == 1
    assert decision.strategy == "single"  # the configured combiner, as the decision reports
    assert "Parallel execution skipped: 3 experts and a judge would cost" in decision.rationale


async def test_high_quality_without_budget_and_an_ordinary_task_stays_single():
    decision = await registry_moe().route(
        ask("Summarise this", task_type="summarization", quality_requirement=0.9)
    )
    assert len(decision.experts) == 1
    assert evidence(decision, "parallel") == []
    assert len(decision.fallbacks) == 3


async def test_a_caller_max_tokens_that_could_pass_the_budget_removes_the_model():
    request = ask("Add logging", **CHEAP_CODE)
    request["max_tokens"] = 1800
    decision = await registry_moe().route(request)
    assert filtered(decision)["gpt-4o-mini"] == "budget"  # 1800 x $0.0006/1k > $0.001
    assert decision.experts == ["gemini-flash-1.5"]
    assert decision.overrides == {}  # the caller's own limit stands


async def test_local_experts_get_cards_from_an_inline_registry():
    moe = make_moe(
        {
            "registry": {
                "models": [
                    {
                        "id": "small",
                        "provider": "local",
                        "cost_per_1k_input": 0,
                        "cost_per_1k_output": 0,
                        "context_window": 2048,
                        "quality_score": 0.6,
                    },
                    {
                        "id": "big",
                        "provider": "remote",
                        "cost_per_1k_input": 0.001,
                        "cost_per_1k_output": 0.002,
                        "context_window": 100000,
                        "quality_score": 0.9,
                    },
                ]
            },
            "experts": {
                "small": {"kind": "echo"},
                "big-one": {"kind": "echo", "registry_id": "big"},
            },
            "gate": {"kind": "multi-factor"},
        },
        plugins=[fake_signals_plugin],
    )
    short = await moe.route(ask("hi", quality_requirement=0.5))
    assert short.experts == ["big-one"]
    long = await moe.route(ask("word " * 3000))
    assert long.experts == ["big-one"]
    assert filtered(long) == {"small": "context window"}
    cheap = await moe.route(ask("hi", budget_usd=0.0001))
    assert cheap.experts == ["small"]


def _model(model_id: str, provider: str, quality: float) -> dict:
    return {
        "id": model_id,
        "provider": provider,
        "cost_per_1k_input": 0.001,
        "cost_per_1k_output": 0.002,
        "context_window": 100000,
        "quality_score": quality,
    }


@pytest.mark.parametrize(("diversity", "first_fallback"), [(3, "other-vendor"), (0, "same-vendor")])
async def test_fallbacks_prefer_another_provider_by_the_diversity_weight(diversity, first_fallback):
    models = [
        _model("best", "acme", 0.90),
        _model("same-vendor", "acme", 0.89),
        _model("other-vendor", "globex", 0.88),
    ]
    moe = make_moe(
        {
            "registry": {"models": models, "experts": {"kind": "echo"}},
            "gate": {"kind": "multi-factor", "weights": {"diversity": diversity}},
        }
    )
    decision = await moe.route(ask("hello"))
    assert decision.experts == ["best"]
    assert decision.fallbacks[0] == first_fallback


async def test_trusted_latency_history_replaces_the_cards_figure():
    request = ask(
        "Describe this screenshot",
        task_type="multimodal",
        quality_requirement=0.85,
        latency_requirement_ms=2000,
    )
    # The fake tracker has seen claude-sonnet-4 answer with a p95 of 900 ms (its card: 3000 ms).
    moe = registry_moe(signals={"success_rates": {"claude-sonnet-4": 0.99}})
    decision = await moe.route(request)
    assert "claude-sonnet-4" not in filtered(decision)
    assert decision.experts == ["gpt-4o"]  # still cheaper, and its card's 1500 ms fits
    assert decision.fallbacks == ["claude-sonnet-4"]

    only_sonnet = registry_moe(
        signals={"success_rates": {"claude-sonnet-4": 0.99}, "open_circuits": ["openai"]}
    )
    decision = await only_sonnet.route(request)
    assert decision.experts == ["claude-sonnet-4"]
    assert "p95 latency 900 ms" in decision.rationale


async def test_a_streamed_request_needs_a_model_that_streams():
    request = ask("Prove it", task_type="general", quality_requirement=0.96)
    request["stream"] = True
    decision = await registry_moe().route(request)
    assert filtered(decision)["o1"] == "capabilities"  # o1 cannot stream
    assert decision.experts == ["claude-opus-4"]
