"""Circuit breakers: a failing expert is skipped after N failures, probed once, and closed."""

from __future__ import annotations

import asyncio

import pytest

from moe_core.appkeys import MOE_KEY
from moe_core.signals import BreakerSignal, find_signals
from moe_core.testing import make_moe
from moe_tracking.base import store_of
from moe_tracking.breaker import CircuitOpen
from tests.plugins.moe_tracking.conftest import ask, tracked

FAILING = {
    "kind": "echo",
    "fail": "error",
    "fallbacks": ["backup"],
    "card": {"provider": "acme"},
}
BACKUP = {"kind": "echo", "prefix": "backup: ", "card": {"provider": "other"}}


def experts(**primary) -> dict:
    return {"primary": {**FAILING, **primary}, "backup": BACKUP}


async def test_breaker_opens_after_consecutive_failures_and_calls_fail_fast(store_config):
    moe = make_moe(tracked(experts(), **store_config))
    async with moe:
        primary = moe.experts["primary"].expert
        for _ in range(3):
            response = await moe.complete(ask(model="auto"))
            assert response.result.content == "backup: hello"
        assert primary.calls == 3
        breaker = next(find_signals(moe.trackers, BreakerSignal))
        assert breaker.circuit_open("primary") and not breaker.circuit_open("backup")

        response = await moe.complete(ask())
        assert primary.calls == 3, "an open breaker must stop calls before they reach the expert"
        assert response.result.content == "backup: hello"
        [fallback] = response.metadata.fallbacks
        assert fallback.expert == "primary"
        assert (
            "circuit breaker for 'primary' is open after 3 consecutive failures" in fallback.error
        )


async def test_after_the_timeout_exactly_one_probe_goes_through_and_success_closes_it(
    store_config,
):
    moe = make_moe(tracked(experts(delay_s=0.2), **store_config))
    async with moe:
        primary = moe.experts["primary"].expert
        for _ in range(3):
            await moe.complete(ask())
        await asyncio.sleep(0.35)  # past reset_timeout_s: half-open
        primary.options.fail = None  # the provider has recovered
        responses = await asyncio.gather(*(moe.complete(ask()) for _ in range(5)))
        assert primary.calls == 4, "half-open lets exactly one probe through"
        answers = sorted(r.result.content for r in responses)
        assert answers == ["backup: hello"] * 4 + ["hello"]
        breaker = moe.trackers["breaker"]
        assert breaker.status()["primary"]["state"] == "closed"
        await moe.complete(ask())
        assert primary.calls == 5


async def test_a_failed_probe_opens_the_breaker_again():
    config = tracked(experts())
    # Long enough that the call right after the failed probe cannot find it half-open again,
    # however busy the machine running the tests is.
    config["trackers"]["breaker"]["reset_timeout_s"] = 1.0
    moe = make_moe(config)
    async with moe:
        primary = moe.experts["primary"].expert
        for _ in range(3):
            await moe.complete(ask())
        await asyncio.sleep(1.05)
        await moe.complete(ask())  # the probe, failing
        assert primary.calls == 4
        status = moe.trackers["breaker"].status()["primary"]
        assert status["state"] == "open" and status["times_opened"] == 2
        await moe.complete(ask())
        assert primary.calls == 4


async def test_successes_reset_the_count_of_consecutive_failures():
    moe = make_moe(tracked(experts()))
    async with moe:
        primary = moe.experts["primary"].expert
        for _ in range(2):
            await moe.complete(ask())
        primary.options.fail = None
        await moe.complete(ask())
        primary.options.fail = "error"
        for _ in range(2):
            await moe.complete(ask())
        assert moe.trackers["breaker"].status()["primary"]["state"] == "closed"
        assert primary.calls == 5


async def test_scope_provider_opens_one_breaker_for_every_expert_of_the_provider():
    trackers = {"breaker": {"kind": "circuit-breaker", "failure_threshold": 3, "scope": "provider"}}
    sibling = {"kind": "echo", "card": {"provider": "acme"}}
    moe = make_moe(tracked({**experts(), "sibling": sibling}, trackers=trackers))
    async with moe:
        for _ in range(3):
            await moe.complete(ask(model="primary"))
        assert moe.trackers["breaker"].status()["acme"]["state"] == "open"
        with pytest.raises(CircuitOpen, match="circuit breaker for 'acme' is open"):
            await moe.complete(ask(model="sibling"))
        assert moe.experts["sibling"].expert.calls == 0
        response = await moe.complete(ask(model="backup"))  # another provider
        assert response.result.content == "backup: hello"


async def test_the_last_expert_of_a_chain_with_an_open_breaker_is_a_503_with_retry_after(
    gateway,
):
    config = tracked({"only": {"kind": "echo", "fail": "error", "card": {"provider": "acme"}}})
    client = await gateway(config)
    for _ in range(3):
        assert (await client.post("/v1/chat/completions", json=ask())).status == 502
    response = await client.post("/v1/chat/completions", json=ask())
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    error = (await response.json())["error"]
    assert error["code"] == "circuit_open" and "only" in error["message"]


async def test_status_and_manual_reset_over_http(gateway):
    client = await gateway(tracked(experts()))
    for _ in range(3):
        await client.post("/v1/chat/completions", json=ask())
    status = await (await client.get("/v1/circuit-breakers")).json()
    assert status["data"]["primary"]["state"] == "open"
    assert status["data"]["primary"]["consecutive_failures"] == 3
    assert "failed as configured" in status["data"]["primary"]["last_error"]
    reset = await client.post("/v1/circuit-breakers/primary/reset")
    assert reset.status == 200
    assert (await reset.json())["state"] == "closed"
    status = await (await client.get("/v1/circuit-breakers")).json()
    assert status["data"]["primary"]["state"] == "closed"


async def test_breaker_routes_say_when_no_breaker_is_configured(gateway):
    client = await gateway({"experts": {"a": {"kind": "echo"}}})
    response = await client.get("/v1/circuit-breakers")
    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "tracker_not_configured" and "circuit-breaker" in error["message"]


async def test_streamed_calls_are_guarded_and_counted_too(gateway):
    client = await gateway(tracked(experts()))
    for _ in range(3):
        response = await client.post("/v1/chat/completions", json=ask(stream=True))
        assert "backup:" in await response.text()
    status = await (await client.get("/v1/circuit-breakers")).json()
    assert status["data"]["primary"]["state"] == "open"
    response = await client.post("/v1/chat/completions", json=ask(stream=True))
    text = await response.text()
    assert response.status == 200 and "backup:" in text and text.rstrip().endswith("[DONE]")
    assert client.server.app[MOE_KEY].experts["primary"].expert.calls == 3


async def test_a_probe_refused_by_a_rate_limit_is_never_claimed():
    trackers = {
        "breaker": {"kind": "circuit-breaker", "failure_threshold": 1, "reset_timeout_s": 0.1},
        "limits": {"kind": "rate-limit", "per_expert": {"primary": {"requests_per_minute": 1}}},
    }
    moe = make_moe(tracked(experts(), trackers=trackers))
    assert [type(guard).__name__ for guard in moe.guards] == [
        "RateLimitTracker",
        "CircuitBreakerTracker",
    ]
    async with moe:
        await moe.complete(ask())  # primary fails once: open; its one call a minute is spent
        await asyncio.sleep(0.15)
        response = await moe.complete(ask())
        assert "Rate limit reached" in response.metadata.fallbacks[0].error
        # Nobody holds the half-open probe: the next call admitted may take it.
        assert await store_of(moe).claim("breaker-probe:primary", 1.0)
