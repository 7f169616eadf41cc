"""The ``otel`` tracker: spans from the pipeline's events.

One request is a ``chat {model}`` span (the GenAI conventions' name), its children a ``route``
span (the gate's work, from the request's arrival to its decision), one ``chat {expert}``
client span per expert call, and a ``tracker {name}`` span for each other tracker's work on each
event. Expert calls are reported when they end, with their latency, so their spans are written
with explicit start and end times.

The request's :class:`RequestTrace` travels in a context variable set when the request starts:
events are emitted in the request's task or in tasks it spawns (which copy its context), so no
table keyed by request id is needed, and nothing is left behind by a request that is cancelled.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from moe_core import ChatRequest, MoE, Tracker
from moe_core.events import Event, ExpertCalled, RequestFinished, RequestStarted, RouteDecided
from moe_core.http import UPSTREAM_HEADERS
from moe_otel import semconv
from moe_otel.config import SECTION, OTelConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

MAX_ATTRIBUTE_CHARS = 300
"""Free text (a rationale, an error message) is cut here: spans are not logs."""


@dataclass(slots=True)
class RequestTrace:
    """One request's spans, and the token counts its expert calls reported."""

    request_id: str
    span: Span
    context: Context
    route: Span | None
    request_attributes: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0
    usage_seen: bool = False
    last_event: Event | None = None
    """The event already recorded, so that each is recorded once however many trackers see it."""


CURRENT: ContextVar[RequestTrace | None] = ContextVar("moe_otel_request", default=None)


def current_trace(request_id: str) -> RequestTrace | None:
    """The trace of ``request_id`` if it is the one in this context."""
    found = CURRENT.get()
    return found if found is not None and found.request_id == request_id else None


class OTelTracker(Tracker):
    """OpenTelemetry spans for every request: gate, expert calls (GenAI attributes), trackers."""

    observes = (RequestStarted, RouteDecided, ExpertCalled, RequestFinished)

    def __init__(self, name: str, options: Any) -> None:
        super().__init__(name, options)
        self.settings = OTelConfig()
        self.tracer: Tracer | None = None
        self._owned: TracerProvider | None = None
        self._moe: MoE | None = None
        self._finisher: Tracker = self

    def attach(self, moe: MoE) -> None:
        self.settings = moe.config.section(SECTION)
        self._moe = moe
        # The core tells trackers of an event in configuration order: the request's span ends
        # after the last one that wants RequestFinished, so that it holds all their work.
        self._finisher = [t for t in moe.trackers.values() if RequestFinished in t.observes][-1]
        if self.settings.trace_trackers:
            for tracker in moe.trackers.values():
                if tracker is not self:
                    self._trace_observer(tracker)

    async def start(self) -> None:
        from moe_otel.provider import global_provider, own_provider

        provider = global_provider()
        if provider is None:
            provider = self._owned = own_provider(self.settings)
        if provider is not None:
            version = importlib.metadata.version("moe-otel")
            self.tracer = provider.get_tracer("moe_otel", version)

    async def close(self) -> None:
        self.tracer = None
        if self._owned is not None:
            # Flushes the spans still queued for export: a blocking call, off the event loop.
            await asyncio.to_thread(self._owned.shutdown)
            self._owned = None

    # -- events --------------------------------------------------------------------------

    async def observe(self, event: Event) -> None:
        if self.tracer is None:
            return
        found = self.see(event)
        if found is not None and isinstance(event, RequestFinished) and self._finisher is self:
            self._finished(found, event)

    def see(self, event: Event) -> RequestTrace | None:
        """Record what ``event`` says, once, whichever tracker is given it first: the gate's
        and an expert call's spans then end when they really ended, not after the trackers
        listed before this one did their work. The request's span ends once the last tracker
        that wants :class:`RequestFinished` has seen it."""
        if isinstance(event, RequestStarted):
            return self.begin(event)
        found = current_trace(event.request_id)
        if found is None or found.last_event is event:
            return found
        found.last_event = event
        if isinstance(event, RouteDecided):
            self._routed(found, event)
        elif isinstance(event, ExpertCalled):
            self._expert_called(found, event)
        return found

    def begin(self, event: RequestStarted) -> RequestTrace | None:
        """Open the request's span and its gate's (once per request)."""
        found = current_trace(event.request_id)
        if found is not None or self.tracer is None:
            return found
        request = event.request
        model = request.model
        # Span names stay few: what a client named is an attribute, and a name only if known
        # (read now: a reload may add experts).
        moe = self._moe
        known = moe is not None and (model in moe.auto_names or model in moe.experts)
        attributes = request_attributes(request)
        span = self.tracer.start_span(
            f"chat {model if known else 'unknown'}",
            attributes={**attributes, semconv.MOE_REQUEST_ID: event.request_id},
        )
        context = trace.set_span_in_context(span)
        route = self.tracer.start_span("route", context=context)
        found = RequestTrace(event.request_id, span, context, route, attributes)
        CURRENT.set(found)
        # W3C trace context for every upstream this request calls, so that their spans join
        # this trace as children of the request's span.
        headers: dict[str, str] = {}
        propagate.inject(headers, context=context)
        UPSTREAM_HEADERS.set(headers)
        return found

    def _routed(self, found: RequestTrace, event: RouteDecided) -> None:
        route, found.route = found.route, None
        if route is None:
            return
        decision = event.decision
        if route.is_recording():
            route.set_attributes(
                {
                    semconv.MOE_GATE: decision.gate,
                    semconv.MOE_EXPERTS: decision.experts,
                    semconv.MOE_FALLBACKS: decision.fallbacks,
                    semconv.MOE_STRATEGY: decision.strategy or "",
                    semconv.MOE_RATIONALE: decision.rationale[:MAX_ATTRIBUTE_CHARS],
                }
            )
            if decision.confidence is not None:
                route.set_attribute(semconv.MOE_CONFIDENCE, decision.confidence)
        route.end()

    def _expert_called(self, found: RequestTrace, event: ExpertCalled) -> None:
        if self.tracer is None:
            return
        end = time.time_ns()
        attributes = {
            **found.request_attributes,
            semconv.SYSTEM: event.provider,
            semconv.PROVIDER: event.provider,
            semconv.REQUEST_MODEL: event.expert,
            semconv.MOE_EXPERT: event.expert,
            semconv.MOE_STREAMED: event.streamed,
        }
        usage = event.usage
        if usage is not None:
            attributes[semconv.INPUT_TOKENS] = usage.prompt_tokens
            attributes[semconv.OUTPUT_TOKENS] = usage.completion_tokens
            found.input_tokens += usage.prompt_tokens
            found.output_tokens += usage.completion_tokens
            found.usage_seen = True
        if event.cost_usd is not None:
            attributes[semconv.MOE_COST] = event.cost_usd
        span = self.tracer.start_span(
            f"chat {event.expert}",
            context=found.context,
            kind=SpanKind.CLIENT,
            start_time=end - round(event.latency_ms * 1_000_000),
            attributes=attributes,
        )
        if not event.ok:
            fail(span, event.error_code, event.error)
        span.end(end_time=end)

    def _finished(self, found: RequestTrace, event: RequestFinished) -> None:
        CURRENT.set(None)
        UPSTREAM_HEADERS.set(None)
        span = found.span
        if found.route is not None:  # refused before a decision: the gate's span ends here
            fail(found.route, event.error_code, event.error)
            found.route.end()
        metadata = event.metadata
        if metadata is not None and span.is_recording():
            if metadata.experts_used:
                span.set_attribute(semconv.RESPONSE_MODEL, metadata.experts_used[-1])
            span.set_attributes(
                {
                    semconv.RESPONSE_ID: f"chatcmpl-{event.request_id}",
                    semconv.MOE_GATE: metadata.gate,
                    semconv.MOE_STRATEGY: metadata.strategy,
                    semconv.MOE_EXPERTS_USED: metadata.experts_used,
                    semconv.MOE_FALLBACKS: [record.expert for record in metadata.fallbacks],
                }
            )
            if metadata.cost_usd is not None:
                span.set_attribute(semconv.MOE_COST, metadata.cost_usd)
        if found.usage_seen:
            span.set_attributes(
                {
                    semconv.INPUT_TOKENS: found.input_tokens,
                    semconv.OUTPUT_TOKENS: found.output_tokens,
                }
            )
        if not event.ok:
            fail(span, event.error_code, event.error)
        span.end()

    # -- other trackers ------------------------------------------------------------------

    def _trace_observer(self, tracker: Tracker) -> None:
        """Give ``tracker`` a span for its work on each event of a traced request.

        The core calls ``tracker.observe`` for every event the tracker wants; an instance
        attribute of the same name takes its place, so the tracker itself never knows."""
        observe: Callable[[Event], Awaitable[None]] = tracker.observe
        name = f"tracker {tracker.name}"

        async def traced(event: Event) -> None:
            tracer = self.tracer
            found = None if tracer is None else self.see(event)
            if tracer is None or found is None:
                return await observe(event)
            attributes = {
                semconv.MOE_TRACKER: tracker.name,
                semconv.MOE_EVENT: type(event).__name__,
            }
            try:
                with tracer.start_as_current_span(
                    name, context=found.context, attributes=attributes
                ):
                    await observe(event)
            finally:
                if tracker is self._finisher and isinstance(event, RequestFinished):
                    self._finished(found, event)

        tracker.observe = traced  # type: ignore[method-assign]


def request_attributes(request: ChatRequest) -> dict[str, Any]:
    """What the GenAI conventions record of a request's parameters (never its messages)."""
    attributes: dict[str, Any] = {
        semconv.OPERATION: "chat",
        semconv.REQUEST_MODEL: request.model[:MAX_ATTRIBUTE_CHARS],
        semconv.REQUEST_STREAM: request.stream,
    }
    limit = request.output_limit
    for key, value in (
        (semconv.REQUEST_MAX_TOKENS, limit),
        (semconv.REQUEST_TEMPERATURE, request.temperature),
        (semconv.REQUEST_TOP_P, request.top_p),
        (semconv.REQUEST_SEED, request.seed),
    ):
        if value is not None:
            attributes[key] = value
    return attributes


def fail(span: Span, code: str | None, message: str | None) -> None:
    """Mark ``span`` failed, with the error's code as ``error.type``."""
    span.set_attribute(semconv.ERROR_TYPE, code or "error")
    span.set_status(Status(StatusCode.ERROR, (message or "")[:MAX_ATTRIBUTE_CHARS]))
