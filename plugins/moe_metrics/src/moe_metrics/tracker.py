"""The ``metrics`` tracker: counts what the pipeline's events say, and tells the HTTP layer
what only events know about its request (the model asked for, the expert that answered, the
time spent waiting on experts).

That hand-over goes through :data:`SCOPE`, a context variable the request observer sets for each
request: events are emitted in the handler's task (or in tasks it spawns, which copy its
context), so the tracker finds the request's :class:`RequestScope` without a table keyed by
request id that a cancelled request could leave behind.
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry

from moe_core import MoE, Tracker
from moe_core.events import Event, ExpertCalled, RequestFinished, RouteDecided
from moe_metrics.collector import StateCollector
from moe_metrics.config import SECTION, MetricsConfig
from moe_metrics.inprocess import InProcessRecorder
from moe_metrics.instruments import Recorder, code_label, confidence_label
from moe_metrics.multiprocess import MultiprocessRecorder

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class RequestScope:
    """One HTTP request as its metrics see it; the tracker fills in what the events say.

    Class attributes hold the defaults, so that a request costs one assignment until an event
    says more (this object is made for every request, which sets ``started``).
    """

    started = 0.0
    """When the request reached the gateway (``time.perf_counter()`` seconds)."""
    model = ""
    expert = ""
    routed_at: float | None = None
    """When the gate decided (``time.perf_counter()`` seconds), for a streamed request; 0.0 for
    one answered in a piece, whose expert calls all end before its first byte (so it needs no
    clock reading); ``None`` until routed."""
    finished = False
    first_byte_at: float | None = None
    overhead: float | None = None
    """The gateway's own seconds, once the response's first byte went out."""
    calls: list[tuple[float, float]] | None = None
    """(start, end) of every finished expert call, in ``time.perf_counter()`` seconds."""
    failed: set[str] | None = None

    def expert_seconds(self, now: float) -> float:
        """Wall-clock time spent waiting on experts so far (overlapping calls counted once).

        A call still running (a stream whose first chunk is out) has not been reported yet: it
        counts from when routing ended, or from the end of the last reported call."""
        spans = self.calls or []
        if self.finished and len(spans) == 1:  # the common case: one call, reported
            start, end = spans[0]
            return end - start
        if self.routed_at is not None and not self.finished:
            since = max((end for _, end in spans), default=self.routed_at)
            spans = [*spans, (max(since, self.routed_at), now)]
        if len(spans) == 1:
            start, end = spans[0]
            return end - start
        total, reach = 0.0, float("-inf")
        for start, end in sorted(spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


def model_label(moe: MoE | None, model: str) -> str:
    """The model a request named, if the gateway knows it (read now: a reload may add
    experts), else ``other``: a client's typo must not become a series of its own."""
    if moe is not None and (model in moe.auto_names or model in moe.experts):
        return model
    return "other"


SCOPE: ContextVar[RequestScope | None] = ContextVar("moe_metrics_scope", default=None)


class MetricsTracker(Tracker):
    """Prometheus metrics from every event: gate decisions, expert calls, tokens, cost,
    fallbacks; served at ``/metrics`` with HTTP figures and breaker and model states."""

    observes = (RouteDecided, ExpertCalled, RequestFinished)

    def __init__(self, name: str, options: Any) -> None:
        super().__init__(name, options)
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_ENV) or None
        if self.multiprocess_dir:
            os.makedirs(self.multiprocess_dir, exist_ok=True)
        # A registry per gateway, not prometheus_client's global one: a process may build
        # several gateways (tests, a reload), and each must start from zero.
        self.registry = CollectorRegistry()
        self.recorder: Recorder
        if self.multiprocess_dir:
            self.recorder = MultiprocessRecorder(self.registry)
        else:
            self.recorder = recorder = InProcessRecorder()
            self.registry.register(recorder)
        self.settings = MetricsConfig()
        self.states: StateCollector | None = None
        self._moe: MoE | None = None

    def attach(self, moe: MoE) -> None:
        self.settings = moe.config.section(SECTION)
        self._moe = moe
        self.states = StateCollector(moe)
        self.registry.register(self.states)

    async def observe(self, event: Event) -> None:
        # One method with the three cases inline: it runs three times for every request.
        kind = type(event)
        if kind is ExpertCalled:
            self._expert_called(event)  # type: ignore[arg-type]
            return
        scope = SCOPE.get()
        if kind is RouteDecided:
            decision = event.decision  # type: ignore[union-attr]
            expert = decision.experts[0] if decision.experts else ""
            confidence = confidence_label(decision.confidence)
            self.recorder.decision(decision.gate, expert, decision.strategy or "", confidence)
            if scope is not None:
                request = event.request  # type: ignore[union-attr]
                scope.model = model_label(self._moe, request.model)
                # A stream's headers go out while its expert call runs: when it began matters.
                scope.routed_at = time.perf_counter() if request.stream else 0.0
        elif kind is RequestFinished:
            metadata = event.metadata  # type: ignore[union-attr]
            expert = ""
            if metadata is not None:
                for record in metadata.fallbacks:
                    self.recorder.fallback(record.expert)
                if metadata.experts_used:
                    expert = metadata.experts_used[-1]
            if scope is not None:
                scope.finished = True
                scope.expert = expert

    def _expert_called(self, event: ExpertCalled) -> None:
        expert, seconds, usage = event.expert, event.latency_ms / 1000, event.usage
        self.recorder.call(
            expert,
            "cached" if event.cached else "ok" if event.ok else code_label(event.error_code),
            seconds,
            0 if usage is None else usage.prompt_tokens,
            0 if usage is None else usage.completion_tokens,
            event.cost_usd,
        )
        scope = SCOPE.get()
        if scope is None:
            return
        now = time.perf_counter()
        if scope.calls is None:
            scope.calls = [(now - seconds, now)]
        else:
            scope.calls.append((now - seconds, now))
        if scope.failed is not None and expert in scope.failed:
            self.recorder.retry(expert)
        if not event.ok:
            if scope.failed is None:
                scope.failed = set()
            scope.failed.add(expert)

    def snapshot(self) -> dict[str, Any]:
        return {"path": self.settings.path, "multiprocess_dir": self.multiprocess_dir}
