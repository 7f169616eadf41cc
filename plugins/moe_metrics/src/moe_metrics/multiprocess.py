"""Metrics in prometheus_client's own objects, for ``moe serve --workers N``.

Under ``$PROMETHEUS_MULTIPROC_DIR`` prometheus_client writes every update to a file of its
process, and its multiprocess collector sums the files of all workers at scrape time, so
whichever worker answers the scrape reports the whole gateway. Each update costs more than in
:mod:`moe_metrics.inprocess` (files, locks, several calls), which is why this is used only where
several processes serve.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from moe_metrics.instruments import (
    COST,
    DECISIONS,
    EXPERT_CALLS,
    FALLBACKS,
    OVERHEAD,
    RATE_LIMITED,
    REQUEST_DURATION,
    REQUESTS,
    RETRIES,
    SPECS,
    TIME_TO_FIRST_TOKEN,
    TOKENS,
)

Labels = tuple[str, ...]


class MultiprocessRecorder:
    """One prometheus_client metric per family, and the children already made for each."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counters = {
            spec.name: Counter(spec.name, spec.doc, spec.labels, registry=registry)
            for spec in SPECS
            if not spec.buckets
        }
        self._histograms = {
            spec.name: Histogram(
                spec.name, spec.doc, spec.labels, registry=registry, buckets=spec.buckets
            )
            for spec in SPECS
            if spec.buckets
        }
        # labels() validates and locks on every use: each child is looked up once.
        self._counter_children: dict[tuple[str, Labels], Counter] = {}
        self._histogram_children: dict[tuple[str, Labels], Histogram] = {}

    def _count(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        child = self._counter_children.get((name, labels))
        if child is None:
            child = self._counter_children[name, labels] = self._counters[name].labels(*labels)
        child.inc(amount)

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        child = self._histogram_children.get((name, labels))
        if child is None:
            child = self._histograms[name].labels(*labels)
            self._histogram_children[name, labels] = child
        child.observe(value)

    def request(
        self,
        route: str,
        method: str,
        model: str,
        expert: str,
        status: str,
        seconds: float,
        overhead: float | None,
        first_token: float | None,
    ) -> None:
        self._count(REQUESTS.name, (route, method, model, expert, status))
        self._observe(REQUEST_DURATION.name, (route, method), seconds)
        if overhead is not None:
            self._observe(OVERHEAD.name, (route,), overhead)
        if first_token is not None:
            self._observe(TIME_TO_FIRST_TOKEN.name, (expert,), first_token)

    def rate_limited(self, route: str) -> None:
        self._count(RATE_LIMITED.name, (route,))

    def call(
        self,
        expert: str,
        outcome: str,
        seconds: float,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
    ) -> None:
        self._observe(EXPERT_CALLS.name, (expert, outcome), seconds)
        if input_tokens:
            self._count(TOKENS.name, (expert, "input"), input_tokens)
        if output_tokens:
            self._count(TOKENS.name, (expert, "output"), output_tokens)
        if cost:
            self._count(COST.name, (expert,), cost)

    def decision(self, gate: str, expert: str, strategy: str, confidence: str) -> None:
        self._count(DECISIONS.name, (gate, expert, strategy, confidence))

    def fallback(self, expert: str) -> None:
        self._count(FALLBACKS.name, (expert,))

    def retry(self, expert: str) -> None:
        self._count(RETRIES.name, (expert,))
