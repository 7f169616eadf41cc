"""An A/B test takes effect whatever the gate: with a gate that knows nothing of experiments
(the default's learned gate, here the fixed one), the running test's arms split the traffic."""

from __future__ import annotations

from tests.plugins.moe_tracking.conftest import tracked

EXPERTS = {"a": {"kind": "echo", "prefix": "a: "}, "b": {"kind": "echo", "prefix": "b: "}}


async def test_a_test_started_on_a_gate_without_experiments_splits_the_traffic(gateway):
    config = tracked(EXPERTS, trackers={"experiments": {"kind": "ab-tests"}})
    config["gate"] = {"kind": "fixed", "expert": "a"}
    client = await gateway(config)
    started = await client.post("/v1/ab-tests", json={"expert_a": "a", "expert_b": "b"})
    assert started.status == 201, await started.text()
    answered = []
    for user in range(40):
        body = {"messages": [{"role": "user", "content": "hi"}], "user": f"user-{user}"}
        answer = await (await client.post("/v1/chat/completions", json=body)).json()
        answered.append(answer["model"])
        if answer["model"] == "b":
            assert "an A/B test assigned this request to b" in answer["moe_metadata"]["rationale"]
    assert 8 <= answered.count("b") <= 32  # about half, stable per user
    again = {"messages": [{"role": "user", "content": "hi"}], "user": "user-0"}
    second = await (await client.post("/v1/chat/completions", json=again)).json()
    assert second["model"] == answered[0]
    # A model named by the caller is never reassigned.
    named = await client.post(
        "/v1/chat/completions",
        json={"model": "a", "messages": [{"role": "user", "content": "x"}], "user": "user-1"},
    )
    assert (await named.json())["model"] == "a"
