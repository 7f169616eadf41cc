"""The ``tracking`` frontend: feedback, routing statistics, expert reports, breakers, A/B tests.

Every route reads or changes a tracker of the gateway; when the tracker a route needs is not
configured, it says which kind to add (404 ``tracker_not_configured``), never a 500.

- ``POST /v1/feedback`` (an ``Idempotency-Key`` makes retries count once),
  ``GET /v1/feedback/{request_id}``
- ``GET /v1/routing/stats``, ``GET /v1/experts/{expert}/report``
- ``GET /v1/circuit-breakers``, ``POST /v1/circuit-breakers/{name}/reset``
- ``POST /v1/ab-tests``, ``GET /v1/ab-tests``, ``GET /v1/ab-tests/{id}`` (analysis),
  ``POST /v1/ab-tests/{id}/stop``
- ``GET /v1/rate-limits`` (what each key and expert used this minute)

Where keys are configured, what changes routing for everyone needs an admin key
(``server.admin_keys_env``): breaker resets, starting and stopping A/B tests, and feedback that
names an expert the gateway did not see answer that request.
"""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from moe_core.appkeys import MOE_KEY
from moe_core.errors import InvalidRequest, MoEError, NotFound, invalid_request
from moe_core.http import json_response, read_json_body
from moe_core.orchestrator import MoE
from moe_core.parts import Frontend
from moe_core.server import require_admin
from moe_tracking.breaker import CircuitBreakerTracker
from moe_tracking.experiments import ABTestSpec, ABTestTracker
from moe_tracking.feedback import Feedback, FeedbackTracker
from moe_tracking.performance import ALL_TASKS, PerformanceTracker
from moe_tracking.ratelimit import RateLimitTracker

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KIND_OF = {
    FeedbackTracker: "feedback",
    PerformanceTracker: "performance",
    CircuitBreakerTracker: "circuit-breaker",
    ABTestTracker: "ab-tests",
    RateLimitTracker: "rate-limit",
}


class TrackingFrontend(Frontend):
    """Feedback, statistics, reports, circuit breakers and A/B tests over HTTP."""

    def setup(self, app: web.Application) -> None:
        routes = [
            ("POST", "/v1/feedback", post_feedback),
            ("GET", "/v1/feedback/{request_id}", get_feedback),
            ("GET", "/v1/routing/stats", routing_stats),
            ("GET", "/v1/experts/{expert}/report", expert_report),
            ("GET", "/v1/circuit-breakers", breakers),
            ("POST", "/v1/circuit-breakers/{name}/reset", reset_breaker),
            ("POST", "/v1/ab-tests", start_ab_test),
            ("GET", "/v1/ab-tests", list_ab_tests),
            ("GET", "/v1/ab-tests/{test_id}", analyse_ab_test),
            ("POST", "/v1/ab-tests/{test_id}/stop", stop_ab_test),
            ("GET", "/v1/rate-limits", rate_limits),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, _store_errors_are_503(handler))


class StoreUnavailable(MoEError):
    """The tracking store cannot be reached: nothing was recorded, try again."""

    status = 503
    type = "service_unavailable"
    code = "store_unavailable"


def _is_store_error(exc: Exception) -> bool:
    """Whether ``exc`` is what a store that is down raises: an OS or SQLite error, or Redis's."""
    if isinstance(exc, (OSError, sqlite3.Error)):
        return True
    # A RedisError exists only once a Redis store has imported redis: recognising one needs no
    # import of redis here, which would cost every start-up a tenth of a second.
    redis_exceptions = sys.modules.get("redis.exceptions")
    return redis_exceptions is not None and isinstance(exc, redis_exceptions.RedisError)


def _store_errors_are_503(handler: Handler) -> Handler:
    """A store that is down is a 503 saying so (so feedback is never acknowledged unstored)."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            if not _is_store_error(exc):
                raise
            raise StoreUnavailable(
                f"The tracking store is unavailable ({type(exc).__name__}: {exc}); nothing was "
                "recorded, retry later",
                headers={"Retry-After": "1"},
            ) from exc

    return guarded


def trackers_of(moe: MoE, kind: type[T]) -> list[T]:
    return [tracker for tracker in moe.trackers.values() if isinstance(tracker, kind)]


def tracker_of(moe: MoE, kind: type[T]) -> T:
    """The first configured tracker of a class, or a 404 naming the kind to configure."""
    found = trackers_of(moe, kind)
    if not found:
        raise NotFound(
            f"This gateway has no {KIND_OF.get(kind, kind.__name__)!r} tracker; add one under "
            f"'trackers' in the configuration (kind: {KIND_OF.get(kind, kind.__name__)})",
            code="tracker_not_configured",
        )
    return found[0]


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated against ``model``; the first problem is a 400 naming the field."""
    body = await read_json_body(request)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None


async def post_feedback(request: web.Request) -> web.Response:
    """Record feedback durably (committed before this answers), then update learned weights.

    Answers 201 with what was stored. A post with an ``Idempotency-Key`` header (1 to 255
    characters, e.g. a UUID) counts once: a retry with the same key and the same body, within
    the tracker's ``remember_days``, answers 200 with the first answer's body and counts
    nothing; the same key with other feedback is a 422 ``idempotency_key_reused``, and while the
    first post is still being recorded a 409 ``idempotency_key_in_use``. Without the header
    every post counts, identical ones too (a user may judge the same answer twice).
    """
    moe = request.app[MOE_KEY]
    feedback = await parse_body(request, Feedback)
    tracker = tracker_of(moe, FeedbackTracker)
    if feedback.expert is not None:
        remembered = await tracker.request(feedback.bare_request_id)
        if not remembered or str(remembered.get("expert")) != feedback.expert:
            require_admin(request)  # it would train routing on an answer nobody saw given
    key = _idempotency_key(request)
    if key is not None and (earlier := await tracker.earlier(key, feedback)) is not None:
        return json_response({"object": "feedback", **earlier})
    try:
        stored = await tracker.record(feedback, set(moe.experts))
        for experiments in trackers_of(moe, ABTestTracker):
            await experiments.on_feedback(stored["request_id"], stored["score"])
    except Exception:
        if key is not None:
            await tracker.abandon(key)
        raise
    if key is not None:
        await tracker.answered(key, feedback, stored)
    return json_response({"object": "feedback", **stored}, status=201)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest(
            "Invalid value for 'Idempotency-Key': it must be 1 to 255 characters.",
            param="Idempotency-Key",
            code="invalid_value",
        )
    return key


async def get_feedback(request: web.Request) -> web.Response:
    moe = request.app[MOE_KEY]
    request_id = request.match_info["request_id"]
    stored = await tracker_of(moe, FeedbackTracker).get(request_id)
    if stored is None:
        raise NotFound(f"No feedback for request {request_id!r}", code="feedback_not_found")
    return json_response({"object": "feedback", **stored})


async def routing_stats(request: web.Request) -> web.Response:
    moe = request.app[MOE_KEY]
    performance = tracker_of(moe, PerformanceTracker)
    await performance.sync()
    stats: dict[str, Any] = performance.routing_stats()
    for breaker in trackers_of(moe, CircuitBreakerTracker):
        stats["circuit_breakers"] = await breaker.fresh_status()
    for experiments in trackers_of(moe, ABTestTracker):
        stats["ab_tests"] = await experiments.list_tests()
    return json_response(stats)


async def expert_report(request: web.Request) -> web.Response:
    """Everything known about one expert: card, performance per task, feedback, its breaker."""
    moe = request.app[MOE_KEY]
    expert = request.match_info["expert"]
    if expert not in moe.experts:
        raise NotFound(
            f"No expert {expert!r}; configured experts: {', '.join(moe.experts)}",
            code="expert_not_found",
        )
    task = request.query.get("task_type") or None
    card = moe.experts[expert].card
    report: dict[str, Any] = {"expert": expert, "task_type": task, "card": card.model_dump()}
    for performance in trackers_of(moe, PerformanceTracker):
        await performance.sync()
        full = performance.report(expert)
        report["performance"] = full["overall"] if task is None else full["tasks"].get(task)
        if task is None:
            report["performance_by_task"] = full["tasks"]
    for feedback in trackers_of(moe, FeedbackTracker):
        await feedback.sync()
        report["feedback"] = feedback.summary(expert, task)
        report["learned_weight"] = feedback.learned_weight(expert, task)
    for breaker in trackers_of(moe, CircuitBreakerTracker):
        target = expert if breaker.options.scope == "expert" else card.provider
        status = (await breaker.fresh_status()).get(target)
        report["circuit_breaker"] = {"name": target, **(status or {"state": "closed"})}
    report.setdefault("performance", None)
    return json_response(report)


async def breakers(request: web.Request) -> web.Response:
    breaker = tracker_of(request.app[MOE_KEY], CircuitBreakerTracker)
    return json_response({"object": "list", "data": await breaker.fresh_status()})


async def reset_breaker(request: web.Request) -> web.Response:
    require_admin(request)
    breaker = tracker_of(request.app[MOE_KEY], CircuitBreakerTracker)
    name = request.match_info["name"]
    return json_response({"name": name, **await breaker.reset(name)})


async def start_ab_test(request: web.Request) -> web.Response:
    require_admin(request)
    moe = request.app[MOE_KEY]
    spec = await parse_body(request, ABTestSpec)
    test = await tracker_of(moe, ABTestTracker).start_test(spec, set(moe.experts))
    return json_response(test, status=201)


async def list_ab_tests(request: web.Request) -> web.Response:
    tests = await tracker_of(request.app[MOE_KEY], ABTestTracker).list_tests()
    return json_response({"object": "list", "data": tests})


async def analyse_ab_test(request: web.Request) -> web.Response:
    experiments = tracker_of(request.app[MOE_KEY], ABTestTracker)
    return json_response(await experiments.analyse(request.match_info["test_id"]))


async def stop_ab_test(request: web.Request) -> web.Response:
    require_admin(request)
    experiments = tracker_of(request.app[MOE_KEY], ABTestTracker)
    return json_response(await experiments.stop_test(request.match_info["test_id"]))


async def rate_limits(request: web.Request) -> web.Response:
    limiter = tracker_of(request.app[MOE_KEY], RateLimitTracker)
    return json_response({**limiter.snapshot(), "this_minute": await limiter.usage()})


__all__ = ["ALL_TASKS", "TrackingFrontend"]
