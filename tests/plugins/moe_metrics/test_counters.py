"""``/metrics`` counts what was really sent: answers, refusals, failures and fallbacks."""

from __future__ import annotations

from moe_core import Gate, RoutingDecision, hookimpl
from tests.plugins.moe_metrics.conftest import chat, scrape, total

CHAT = "/v1/chat/completions"
EXPERTS = {
    "experts": {
        "flaky": {"kind": "echo", "fail": "error", "fallbacks": ["steady"]},
        "steady": {"kind": "echo", "card": {"cost_per_1k_input": 2.0, "cost_per_1k_output": 4.0}},
    },
    "gate": {"kind": "fixed", "expert": "steady"},
}


async def test_counters_match_the_requests_sent(gateway):
    client = await gateway(EXPERTS)
    for _ in range(3):  # answered by the gate's choice
        assert (await client.post(CHAT, json=chat("one two three"))).status == 200
    for _ in range(2):  # the named expert fails; its fallback answers
        assert (await client.post(CHAT, json=chat("four five", model="flaky"))).status == 200
    assert (await client.post(CHAT, json=chat(model="nobody"))).status == 404
    assert (await client.post(CHAT, json={"messages": []})).status == 400
    assert (await client.get("/no/such/page")).status == 404

    samples = await scrape(client)
    requests = "moe_requests_total"
    assert total(samples, requests, route=CHAT) == 7
    assert total(samples, requests, route=CHAT, status="200") == 5
    assert total(samples, requests, route=CHAT, status="200", model="auto", expert="steady") == 3
    assert total(samples, requests, route=CHAT, status="200", model="flaky", expert="steady") == 2
    assert total(samples, requests, route=CHAT, status="404") == 1
    assert total(samples, requests, route=CHAT, status="400") == 1
    assert total(samples, requests, route="unmatched", method="GET", status="404") == 1
    assert total(samples, "moe_request_duration_seconds_count", route=CHAT, method="POST") == 7

    calls = "moe_expert_call_duration_seconds_count"
    assert total(samples, calls, expert="flaky", outcome="upstream_error") == 2
    assert total(samples, calls, expert="steady", outcome="ok") == 5
    assert total(samples, calls, expert="flaky", outcome="ok") == 0
    assert total(samples, "moe_fallbacks_total", expert="flaky") == 2
    decisions = "moe_gate_decisions_total"
    assert total(samples, decisions, gate="fixed", expert="steady", confidence="1") == 3
    assert total(samples, "moe_gate_decisions_total", gate="direct", expert="flaky") == 2

    # The echo expert counts words: 3 in, 3 out for the first prompt; 2 and 2 for the second.
    tokens = "moe_expert_tokens_total"
    assert total(samples, tokens, expert="steady", type="input") == 3 * 3 + 2 * 2
    assert total(samples, tokens, expert="steady", type="output") == 3 * 3 + 2 * 2
    cost = (13 * 2.0 + 13 * 4.0) / 1000
    assert abs(total(samples, "moe_expert_cost_usd_total", expert="steady") - cost) < 1e-9


async def test_streamed_answers_count_time_to_first_token(gateway):
    client = await gateway({"experts": {"slow": {"kind": "echo", "delay_s": 0.05}}})
    response = await client.post(CHAT, json=chat("a b c", stream=True))
    assert response.status == 200
    assert "data: [DONE]" in await response.text()
    samples = await scrape(client)
    assert total(samples, "moe_requests_total", route=CHAT, expert="slow", status="200") == 1
    assert total(samples, "moe_time_to_first_token_seconds_count", expert="slow") == 1
    first = total(samples, "moe_time_to_first_token_seconds_sum", expert="slow")
    whole = total(samples, "moe_request_duration_seconds_sum", route=CHAT)
    # The first chunk waits for the expert's delay once; the whole stream twice more.
    assert 0.05 <= first < whole
    assert whole >= 0.15
    assert total(samples, "moe_expert_call_duration_seconds_count", expert="slow") == 1


async def test_label_values_stay_bounded_whatever_clients_send(gateway):
    client = await gateway(EXPERTS)
    for model in ("x" * 200, "made-up-1", "made-up-2"):
        await client.post(CHAT, json=chat(model=model))
    await client.request("PROPFIND", "/v1/chat/completions")
    for path in ("/a", "/b/c", "/d?e=f"):
        await client.get(path)
    samples = await scrape(client)
    values = {value for _, labels, _ in samples for value in labels.values()}
    assert not any(
        "made-up" in value or "xxx" in value or value in ("/a", "/b/c") for value in values
    )
    assert total(samples, "moe_requests_total", route="unmatched") == 4
    assert total(samples, "moe_requests_total", method="other", status="405") == 1


async def test_rate_limit_and_key_rejections_are_counted(gateway, monkeypatch):
    monkeypatch.setenv("TEST_CLIENT_KEYS", "client-key")
    monkeypatch.setenv("TEST_ADMIN_KEYS", "admin-key")
    config = {
        **EXPERTS,
        "server": {"api_keys_env": "TEST_CLIENT_KEYS", "admin_keys_env": "TEST_ADMIN_KEYS"},
        "trackers": {"limits": {"kind": "rate-limit", "per_key": {"requests_per_minute": 2}}},
        "tracking": {"store": "memory"},
    }
    client = await gateway(config)
    key = {"Authorization": "Bearer client-key"}
    statuses = [(await client.post(CHAT, json=chat(), headers=key)).status for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    # A request the key check refuses is counted too, and told its overhead.
    refused = await client.post(CHAT, json=chat())
    assert refused.status == 401 and float(refused.headers["x-moe-overhead-ms"]) >= 0
    # The scrape comes with the admin key, whose own budget is untouched.
    samples = await scrape(client, Authorization="Bearer admin-key")
    assert total(samples, "moe_rate_limited_total", route=CHAT) == 3
    assert total(samples, "moe_requests_total", route=CHAT, status="429") == 3
    assert total(samples, "moe_requests_total", route=CHAT, status="401") == 1


class StatedConfidence(Gate):
    """Chooses ``a`` with the confidence the prompt states (a test gate)."""

    async def route(self, request, experts, signals) -> RoutingDecision:
        text = request.last_user_text()
        confidence = None if text == "none" else float(text)
        return RoutingDecision(experts=["a"], confidence=confidence, rationale="as told")


class StatedConfidencePlugin:
    @hookimpl
    def moe_register_gates(self, register):
        register("stated", StatedConfidence)


async def test_decisions_are_counted_by_confidence_bucket(gateway):
    config = {"experts": {"a": {"kind": "echo"}}, "gate": {"kind": "stated"}}
    client = await gateway(config, plugins=[("stated", StatedConfidencePlugin())])
    for text in ("0.2", "0.5", "0.55", "0.93", "0.93", "1.0", "none"):
        assert (await client.post(CHAT, json=chat(text))).status == 200
    samples = await scrape(client)
    buckets = {
        labels["confidence"]: value
        for name, labels, value in samples
        if name == "moe_gate_decisions_total" and labels["gate"] == "stated"
    }
    assert buckets == {"0.5": 2, "0.7": 1, "0.95": 2, "1": 1, "none": 1}
