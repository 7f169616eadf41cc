"""The breaker's cooldown: an upstream's Retry-After keeps its expert uncalled for that long,
on every store, without ever opening the breaker; the gateway's own busy signals never count."""

from __future__ import annotations

import asyncio
import copy
import time
from email.utils import formatdate

import pytest

from moe_core.events import ExpertCalled
from moe_core.testing import make_moe
from moe_tracking.breaker import CoolingDown
from tests.plugins.moe_tracking.conftest import ask, tracked

EXPERTS = {
    "primary": {"kind": "echo", "fallbacks": ["backup"], "card": {"provider": "acme"}},
    "backup": {"kind": "echo", "prefix": "backup: ", "card": {"provider": "other"}},
}


def failed(status: int, code: str, retry_after: str | None) -> ExpertCalled:
    """What the gateway reports of a call to ``primary`` that failed this way."""
    return ExpertCalled(
        request_id="r",
        expert="primary",
        provider="acme",
        task_type=None,
        latency_ms=3.0,
        ok=False,
        streamed=False,
        error=f"upstream said {status}",
        error_code=code,
        error_status=status,
        retry_after=retry_after,
    )


async def test_retry_after_keeps_the_expert_uncalled_until_it_has_passed(store_config):
    moe = make_moe(tracked(EXPERTS, **store_config))
    async with moe:
        breaker = moe.trackers["breaker"]
        primary = moe.experts["primary"].expert
        await breaker.observe(failed(429, "rate_limit_exceeded", "0.6"))

        response = await moe.complete(ask())
        assert response.result.content == "backup: hello"
        assert primary.calls == 0, "a cooling-down expert must not be called"
        [fallback] = response.metadata.fallbacks
        assert "asked for a pause (Retry-After)" in fallback.error
        assert "upstream said 429" in fallback.error
        with pytest.raises(CoolingDown) as refused:
            await breaker.admit("primary", "acme")
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
        status = (await breaker.fresh_status())["primary"]
        assert status["state"] == "closed" and 0 < status["cooldown_s"] <= 0.6
        assert breaker.circuit_open("primary"), "gates should steer around it meanwhile"

        await asyncio.sleep(0.65)
        assert (await moe.complete(ask())).result.content == "hello"
        assert primary.calls == 1 and not breaker.circuit_open("primary")


async def test_an_http_date_counts_and_max_cooldown_s_caps_it():
    config = copy.deepcopy(tracked(EXPERTS))  # the trackers' config is shared: change a copy
    config["trackers"]["breaker"]["max_cooldown_s"] = 5
    moe = make_moe(config)
    async with moe:
        breaker = moe.trackers["breaker"]
        in_an_hour = formatdate(time.time() + 3600, usegmt=True)
        await breaker.observe(failed(502, "upstream_error", in_an_hour))
        assert 4 < breaker.status()["primary"]["cooldown_s"] <= 5


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "cooldown"),
    [
        (429, "rate_limit_exceeded", None, True),  # no Retry-After: nothing to honour
        (400, "upstream_rejected", "30", True),  # the caller's fault
        (503, "expert_busy", "1", True),  # the gateway's own queue was full
        (503, "expert_unavailable", "1", True),  # a gateway 503 of its own
        (429, "rate_limit_exceeded", "30", False),  # turned off
    ],
)
async def test_no_cooldown_where_no_upstream_asked_for_one_or_it_is_turned_off(
    status, code, retry_after, cooldown
):
    config = copy.deepcopy(tracked(EXPERTS))
    config["trackers"]["breaker"]["cooldown"] = cooldown
    moe = make_moe(config)
    async with moe:
        await moe.trackers["breaker"].observe(failed(status, code, retry_after))
        assert (await moe.complete(ask())).result.content == "hello"


async def test_a_full_pool_or_queue_never_opens_the_breaker_and_a_cooldown_is_no_failure():
    moe = make_moe(tracked(EXPERTS))  # failure_threshold: 3
    async with moe:
        breaker = moe.trackers["breaker"]
        for _ in range(5):
            await breaker.observe(failed(503, "expert_busy", "1"))
            await breaker.observe(failed(429, "rate_limit_exceeded", "0.01"))
        await asyncio.sleep(0.02)
        status = breaker.status()["primary"]
        assert status["state"] == "closed" and status["consecutive_failures"] == 0
        assert (await moe.complete(ask())).result.content == "hello"
