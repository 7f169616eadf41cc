"""The ``tracking`` plugin's hooks: tracker kinds, their routes, the store section, rate limits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from moe_core import Register, hookimpl
from moe_core.orchestrator import MoE
from moe_core.plugins import AddMiddleware, RegisterSection
from moe_tracking.breaker import BreakerOptions, CircuitBreakerTracker
from moe_tracking.experiments import ABTestOptions, ABTestTracker
from moe_tracking.feedback import FeedbackOptions, FeedbackTracker
from moe_tracking.middleware import rate_limit_middleware
from moe_tracking.performance import PerformanceOptions, PerformanceTracker
from moe_tracking.ratelimit import RateLimitOptions, RateLimitTracker
from moe_tracking.routes import TrackingFrontend
from moe_tracking.stores import SECTION, TrackingConfig


@hookimpl
def moe_register_trackers(register: Register) -> None:
    register("performance", PerformanceTracker, options=PerformanceOptions)
    register("circuit-breaker", CircuitBreakerTracker, options=BreakerOptions)
    register("feedback", FeedbackTracker, options=FeedbackOptions)
    register("ab-tests", ABTestTracker, options=ABTestOptions)
    register("rate-limit", RateLimitTracker, options=RateLimitOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("tracking", TrackingFrontend)


@hookimpl
def moe_config_sections(register: RegisterSection) -> None:
    register(SECTION, TrackingConfig)


@hookimpl
def moe_setup_app(app: web.Application, moe: MoE, add_middleware: AddMiddleware) -> None:
    limiters = [
        tracker for tracker in moe.trackers.values() if isinstance(tracker, RateLimitTracker)
    ]
    if limiters:
        add_middleware(rate_limit_middleware(limiters), stage="limits")


@hookimpl
def moe_default_config() -> dict[str, Any]:
    """Every tracker, keeping what it learns in SQLite so feedback survives a restart."""
    return {
        "trackers": {
            "performance": {"kind": "performance"},
            "breaker": {"kind": "circuit-breaker"},
            "feedback": {"kind": "feedback"},
            "ab-tests": {"kind": "ab-tests"},
            # No limits unless set: per_key: {requests_per_minute: 60, tokens_per_minute: 100000}
            "rate-limit": {"kind": "rate-limit"},
        },
        SECTION: {"store": "sqlite"},
    }
