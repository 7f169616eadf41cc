"""End to end over HTTP: registry-made ``openai`` experts talking to a fake OpenAI upstream."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.moe_router.fakes import fake_signals_plugin
from tests.plugins.moe_router.helpers import REGISTRY


def config(open_circuits: list[str]) -> dict[str, Any]:
    return {
        "registry": {
            "path": str(REGISTRY),
            "experts": {"kind": "openai", "base_url": "${MOE_TEST_UPSTREAM_URL}"},
        },
        "gate": {"kind": "multi-factor"},
        "trackers": {"signals": {"kind": "fake-signals", "open_circuits": open_circuits}},
    }


@pytest.fixture
async def upstream(fake_upstream, monkeypatch):
    fake, base_url = fake_upstream
    monkeypatch.setenv("MOE_TEST_UPSTREAM_URL", base_url)
    return fake


async def test_an_open_circuit_sends_the_request_to_another_provider(upstream, gateway):
    client = await gateway(config(["openai"]), plugins=[fake_signals_plugin])
    body = {
        "messages": [{"role": "user", "content": "Add logging to existing API endpoint"}],
        "moe": {"task_type": "code_generation", "budget_usd": 0.001, "quality_requirement": 0.7},
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200
    answer = await response.json()
    assert answer["model"] == "gemini-flash-1.5"
    metadata = answer["moe_metadata"]
    assert metadata["gate"] == "multi-factor"
    assert metadata["rationale"].startswith("Selected gemini-flash-1.5 for code_generation")
    assert "circuit open 5" in metadata["rationale"]
    [sent] = upstream.requests
    assert sent["model"] == "gemini-flash-1.5"
    assert sent["max_tokens"] * 0.0003 / 1000 <= 0.001  # the gate's budget cap went upstream
    # The actual cost comes from the usage the upstream reported, at the registry's prices.
    usage = answer["usage"]
    assert usage["total_tokens"] > 0
    assert metadata["cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 0.000075 + usage["completion_tokens"] * 0.0003) / 1000
    )


async def test_when_the_circuit_removes_the_last_candidate_the_caller_gets_a_clear_400(
    upstream, gateway
):
    client = await gateway(config(["openai"]), plugins=[fake_signals_plugin])
    body = {
        "messages": [{"role": "user", "content": "Describe this screenshot"}],
        "moe": {
            "task_type": "multimodal",
            "quality_requirement": 0.85,
            "latency_requirement_ms": 2000,
        },
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "no_eligible_expert"
    assert error["param"] == "moe"
    assert "gpt-4o (circuit open for openai)" in error["message"]
    assert upstream.requests == []


async def test_a_critical_audit_asks_three_models_and_a_judge_upstream(upstream, gateway):
    upstream.behaviour.reply = "Best: 2. Finding: the refund endpoint lacks an ownership check."
    client = await gateway(config([]), plugins=[fake_signals_plugin])
    body = {
        "messages": [{"role": "user", "content": "Security audit of the payment service"}],
        "moe": {
            "task_type": "security_audit",
            "quality_requirement": 0.95,
            "metadata": {"enable_parallel": True},
        },
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200
    answer = await response.json()
    metadata = answer["moe_metadata"]
    assert metadata["strategy"] == "judge"
    assert sorted(request["model"] for request in upstream.requests) == [
        "claude-opus-4",
        "claude-sonnet-4",
        "gpt-5",
        "o1",
    ]
    assert upstream.requests[-1]["model"] == "gpt-5"  # the judge reads the three answers
    assert any(note.startswith("the judge picked o1") for note in metadata["notes"])
