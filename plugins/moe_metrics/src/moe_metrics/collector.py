"""States read at scrape time rather than counted: which experts are loaded, which circuit
breakers are open.

They exist whether or not requests come, so they are gauges computed when Prometheus asks.
Breakers are found by capability (:class:`moe_core.signals.BreakerControl`), never by the
plugin that provides them. Under multiprocess mode each worker answers with its own view of
its models; breakers live in the tracking store, which workers share.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from moe_core import MoE
from moe_core.signals import BreakerControl

log = structlog.get_logger(__name__)

EXPERT_STATES = ("idle", "loading", "ready", "failed")
BREAKER_STATES = ("closed", "open", "half_open")


class StateCollector(Collector):
    """Expert load states and circuit-breaker states as gauges (one series per state, 1 for
    the current one: Prometheus's convention for an enumeration)."""

    def __init__(self, moe: MoE) -> None:
        self._moe = moe
        self._breakers: dict[str, dict[str, dict[str, Any]]] = {}

    async def refresh(self) -> None:
        """Read every breaker tracker's state (from its store: what all instances agree on)."""
        found = {}
        for name, tracker in self._moe.trackers.items():
            if not isinstance(tracker, BreakerControl):
                continue
            try:
                found[name] = await tracker.fresh_status()
            except Exception as exc:  # its store is down: the rest of the scrape still answers
                log.warning("metrics.breakers_unreadable", tracker=name, error=str(exc))
        self._breakers = found

    def collect(self) -> Iterator[GaugeMetricFamily]:
        experts = GaugeMetricFamily(
            "moe_expert_state",
            "Each expert's load state: 1 for the current one of idle, loading, ready, failed.",
            labels=["expert", "kind", "state"],
        )
        ready = 0
        for name, slot in self._moe.experts.items():
            ready += slot.state == "ready"
            for state in EXPERT_STATES:
                experts.add_metric([name, slot.kind, state], float(slot.state == state))
        yield experts
        yield GaugeMetricFamily(
            "moe_models_loaded", "Experts loaded and ready to answer.", value=float(ready)
        )
        breakers = GaugeMetricFamily(
            "moe_circuit_breaker_state",
            "Each circuit breaker's state: 1 for the current one of closed, open, half_open.",
            labels=["tracker", "target", "state"],
        )
        for tracker, statuses in self._breakers.items():
            for target, status in statuses.items():
                current = status.get("state", "closed")
                for state in BREAKER_STATES:
                    breakers.add_metric([tracker, target, state], float(current == state))
        yield breakers
