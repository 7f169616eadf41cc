"""States read at scrape time: loaded models and circuit breakers."""

from __future__ import annotations

import asyncio

from tests.plugins.moe_metrics.conftest import chat, scrape, total

CHAT = "/v1/chat/completions"


async def test_models_loaded_and_each_experts_state(gateway):
    config = {
        "experts": {
            "ready": {"kind": "echo"},
            "broken": {"kind": "echo", "load_error": "weights missing"},
            "loading": {"kind": "echo", "load_delay_s": 30},
        }
    }
    client = await gateway(config, wait=False)
    for _ in range(100):  # experts load in the background; two of them quickly
        samples = await scrape(client)
        if total(samples, "moe_expert_state", state="loading") == 1:
            break
        await asyncio.sleep(0.05)
    assert total(samples, "moe_models_loaded") == 1
    state = "moe_expert_state"
    assert total(samples, state, expert="ready", kind="echo", state="ready") == 1
    assert total(samples, state, expert="broken", state="failed") == 1
    assert total(samples, state, expert="loading", state="loading") == 1
    assert total(samples, state, expert="loading", state="ready") == 0
    assert (await client.post(CHAT, json=chat(model="ready"))).status == 200


async def test_an_open_circuit_breaker_shows_as_open(gateway):
    config = {
        "experts": {
            "flaky": {"kind": "echo", "fail": "error", "fallbacks": ["steady"]},
            "steady": {"kind": "echo"},
        },
        "gate": {"kind": "fixed", "expert": "flaky"},
        "trackers": {"breaker": {"kind": "circuit-breaker", "failure_threshold": 2}},
        "tracking": {"store": "memory"},
    }
    client = await gateway(config)
    for _ in range(3):
        assert (await client.post(CHAT, json=chat())).status == 200
    samples = await scrape(client)
    breaker = "moe_circuit_breaker_state"
    assert total(samples, breaker, tracker="breaker", target="flaky", state="open") == 1
    assert total(samples, breaker, tracker="breaker", target="flaky", state="closed") == 0
    # Two failures opened it; the third request's call was refused, not made.
    assert total(samples, "moe_expert_call_duration_seconds_count", expert="flaky") == 2
    assert total(samples, "moe_fallbacks_total", expert="flaky") == 3
