"""What trackers observe: one event per step of a request, emitted by the orchestrator.

Trackers are fed here and only here, so no caller ever has to remember to report an outcome.
Events are small slotted dataclasses, created on the hot path of every request: trackers read
them and must not change them (they are not frozen because a frozen dataclass is several times
slower to build).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from moe_core.models import ChatRequest, MoEMetadata, RoutingDecision, Usage


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), to the microsecond.

    Every event's latency is measured this way. ``round(ms, 3)`` would give the same number but
    formats the float through a string to do it, which costs more than all the arithmetic."""
    return round((time.perf_counter() - started) * 1_000_000) / 1000


@dataclass(slots=True)
class RequestStarted:
    request_id: str
    request: ChatRequest


@dataclass(slots=True)
class RouteDecided:
    request_id: str
    request: ChatRequest
    decision: RoutingDecision


@dataclass(slots=True)
class ExpertCalled:
    """One call to one expert, successful or not."""

    request_id: str
    expert: str
    provider: str
    task_type: str | None
    latency_ms: float
    ok: bool
    streamed: bool
    usage: Usage | None = None
    cost_usd: float | None = None
    error: str | None = None
    error_code: str | None = None
    error_status: int | None = None
    """The error's HTTP status: 4xx, the caller's request was refused; 5xx, the expert failed."""
    retry_after: str | None = None
    """The error's ``Retry-After`` (seconds or an HTTP date): when the backend said to return."""
    cached: bool = False
    """Answered from a response cache: the expert was not called (see ``CallCache``)."""
    cancelled: bool = False
    """Abandoned before it answered (a lost race, a client gone): neither success nor failure."""


@dataclass(slots=True)
class RequestFinished:
    request_id: str
    ok: bool
    latency_ms: float
    metadata: MoEMetadata | None = None
    error: str | None = None
    error_code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Event = RequestStarted | RouteDecided | ExpertCalled | RequestFinished
