"""Rate limits per API key and per expert: 429 with Retry-After in OpenAI's envelope."""

from __future__ import annotations

from tests.plugins.moe_tracking.conftest import ask, tracked

EXPERTS = {"primary": {"kind": "echo", "fallbacks": ["backup"]}, "backup": {"kind": "echo"}}


def limited(store_config=None, **options) -> dict:
    trackers = {"limits": {"kind": "rate-limit", **options}}
    return tracked(EXPERTS, trackers=trackers, **(store_config or {}))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_requests_per_minute_per_key(gateway, monkeypatch):
    monkeypatch.setenv("TEST_KEYS", "key-one,key-two")
    config = limited(per_key={"requests_per_minute": 3})
    config["server"] = {"api_keys_env": "TEST_KEYS"}
    client = await gateway(config)
    for _ in range(3):
        response = await client.post("/v1/chat/completions", json=ask(), headers=bearer("key-one"))
        assert response.status == 200
    refused = await client.post("/v1/chat/completions", json=ask(), headers=bearer("key-one"))
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = (await refused.json())["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "3 requests per minute" in error["message"]
    assert "key-one" not in error["message"], "keys are never echoed back"
    other = await client.post("/v1/chat/completions", json=ask(), headers=bearer("key-two"))
    assert other.status == 200, "each key has its own budget"
    assert (await client.get("/health")).status == 200, "health checks are never limited"
    # A request refused for a bad key spends nothing of anyone's budget.
    assert (await client.get("/v1/models", headers=bearer("wrong"))).status == 401


async def test_tokens_per_minute_per_key(store_config, gateway):
    client = await gateway(limited(store_config, per_key={"tokens_per_minute": 10}))
    first = await client.post("/v1/chat/completions", json=ask("one two three four five six"))
    assert first.status == 200  # 6 tokens in, 6 out: 12 used, over 10 from now on
    refused = await client.post("/v1/chat/completions", json=ask("again"))
    assert refused.status == 429
    assert "12 of 10 tokens per minute" in (await refused.json())["error"]["message"]
    usage = await (await client.get("/v1/rate-limits")).json()
    assert usage["this_minute"]["key:anonymous"]["tokens"] == 12


async def test_an_expert_over_its_limit_hands_over_to_its_fallback(store_config, gateway):
    client = await gateway(
        limited(store_config, per_expert={"primary": {"requests_per_minute": 2}})
    )
    models = []
    for _ in range(4):
        response = await client.post("/v1/chat/completions", json=ask(model="primary"))
        body = await response.json()
        models.append(body["model"])
    assert models == ["primary", "primary", "backup", "backup"]
    [fallback] = body["moe_metadata"]["fallbacks"]
    assert "Rate limit reached for expert 'primary'" in fallback["error"]


async def test_an_expert_over_its_limit_with_no_fallback_is_a_429(gateway):
    limits = {"kind": "rate-limit", "per_expert": {"only": {"requests_per_minute": 1}}}
    config = tracked({"only": {"kind": "echo"}}, trackers={"limits": limits})
    client = await gateway(config)
    assert (await client.post("/v1/chat/completions", json=ask())).status == 200
    refused = await client.post("/v1/chat/completions", json=ask())
    assert refused.status == 429 and "Retry-After" in refused.headers
