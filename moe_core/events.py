"""What trackers observe: one event per step of a request, emitted by the orchestrator.

Trackers are fed here and only here, so no caller ever has to remember to report an outcome.
Events are small frozen dataclasses: they are created on the hot path of every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moe_core.models import ChatRequest, MoEMetadata, RoutingDecision, Usage


@dataclass(frozen=True, slots=True)
class RequestStarted:
    request_id: str
    request: ChatRequest


@dataclass(frozen=True, slots=True)
class RouteDecided:
    request_id: str
    request: ChatRequest
    decision: RoutingDecision


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class RequestFinished:
    request_id: str
    ok: bool
    latency_ms: float
    metadata: MoEMetadata | None = None
    error: str | None = None
    error_code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Event = RequestStarted | RouteDecided | ExpertCalled | RequestFinished
