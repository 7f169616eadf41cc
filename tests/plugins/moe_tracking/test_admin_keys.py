"""Key scopes: a client key answers chats and reads statistics; what changes routing for every
client (breaker resets, A/B tests, feedback naming an expert the gateway did not see answer)
needs an admin key."""

from __future__ import annotations

from tests.plugins.moe_tracking.conftest import ask, tracked

EXPERTS = {"a": {"kind": "echo"}, "b": {"kind": "echo"}}
TRACKERS = {
    "breaker": {"kind": "circuit-breaker"},
    "feedback": {"kind": "feedback"},
    "experiments": {"kind": "ab-tests"},
}
CLIENT = {"Authorization": "Bearer client-key"}
ADMIN = {"Authorization": "Bearer admin-key"}


async def keyed_gateway(gateway, monkeypatch, *, admin: bool = True):
    monkeypatch.setenv("CLIENT_KEYS", "client-key")
    monkeypatch.setenv("ADMIN_KEYS", "admin-key")
    config = tracked(EXPERTS, trackers=TRACKERS)
    config["server"] = {"api_keys_env": "CLIENT_KEYS"}
    if admin:
        config["server"]["admin_keys_env"] = "ADMIN_KEYS"
    return await gateway(config)


async def test_a_client_key_cannot_reset_a_breaker_or_run_an_ab_test(gateway, monkeypatch):
    client = await keyed_gateway(gateway, monkeypatch)
    test = {"expert_a": "a", "expert_b": "b"}
    for method, path, body in [
        ("POST", "/v1/circuit-breakers/a/reset", None),
        ("POST", "/v1/ab-tests", test),
    ]:
        refused = await client.request(method, path, json=body, headers=CLIENT)
        assert refused.status == 403, path
        error = (await refused.json())["error"]
        assert error["type"] == "permission_error"
        assert "server.admin_keys_env" in error["message"]
    reset = await client.post("/v1/circuit-breakers/a/reset", headers=ADMIN)
    assert reset.status == 200
    started = await client.post("/v1/ab-tests", json=test, headers=ADMIN)
    assert started.status == 201, await started.text()
    test_id = (await started.json())["id"]
    assert (await client.post(f"/v1/ab-tests/{test_id}/stop", headers=CLIENT)).status == 403
    assert (await client.post(f"/v1/ab-tests/{test_id}/stop", headers=ADMIN)).status == 200
    # Reading is for every client; the admin key answers chats too.
    assert (await client.get("/v1/circuit-breakers", headers=CLIENT)).status == 200
    chat = await client.post("/v1/chat/completions", json=ask(), headers=ADMIN)
    assert chat.status == 200


async def test_feedback_on_an_answer_the_client_got_needs_no_admin_key(gateway, monkeypatch):
    client = await keyed_gateway(gateway, monkeypatch)
    answer = await (await client.post("/v1/chat/completions", json=ask(), headers=CLIENT)).json()
    rid = answer["moe_metadata"]["request_id"]
    own = {"request_id": rid, "rating": 5, "expert": answer["model"]}
    assert (await client.post("/v1/feedback", json=own, headers=CLIENT)).status == 201
    # Naming another expert (or a request the gateway never saw) would train routing on an
    # answer nobody got: only an admin may.
    other = "b" if answer["model"] == "a" else "a"
    forged = {"request_id": rid, "rating": 1, "expert": other}
    refused = await client.post("/v1/feedback", json=forged, headers=CLIENT)
    assert refused.status == 403
    assert (await client.post("/v1/feedback", json=forged, headers=ADMIN)).status == 201


async def test_keys_without_an_admin_key_lock_admin_actions_for_everyone(gateway, monkeypatch):
    client = await keyed_gateway(gateway, monkeypatch, admin=False)
    refused = await client.post("/v1/circuit-breakers/a/reset", headers=CLIENT)
    assert refused.status == 403


async def test_a_gateway_without_keys_is_open_to_admin_actions(gateway):
    client = await gateway(tracked(EXPERTS, trackers=TRACKERS))
    assert (await client.post("/v1/circuit-breakers/a/reset")).status == 200
