"""Metrics kept as plain numbers in this process, exported by a prometheus_client collector.

Why not prometheus_client's ``Counter`` and ``Histogram`` objects here: each of their updates is
several Python calls and a lock, and a request makes about ten, which measured as the larger
part of what metrics cost a request (``bench/metrics_cost.py``). The gateway updates its
figures only from the event loop's thread, so a dict and a list of bucket counts need no lock,
and the text itself is still written by prometheus_client from the families built here at
scrape time. With several worker processes, :mod:`moe_metrics.multiprocess` takes over: only
prometheus_client's own objects can be summed across processes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from moe_metrics.instruments import (
    COST,
    DECISIONS,
    EXPERT_CALLS,
    FALLBACKS,
    LATENCY_BUCKETS,
    OVERHEAD,
    OVERHEAD_BUCKETS,
    RATE_LIMITED,
    REQUEST_DURATION,
    REQUESTS,
    RETRIES,
    SPECS,
    TIME_TO_FIRST_TOKEN,
    TOKENS,
    Spec,
)

Key = tuple[str, ...]


class InProcessRecorder(Collector):
    """Counters as ``{labels: value}``; histograms as ``{labels: [count per bucket..., sum]}``
    (the last bucket is +Inf), made cumulative only when scraped."""

    def __init__(self) -> None:
        self._values: dict[str, dict[Key, float]] = {}
        self._buckets: dict[str, dict[Key, list[float]]] = {}
        for spec in SPECS:
            (self._buckets if spec.buckets else self._values)[spec.name] = {}
        self._requests = self._values[REQUESTS.name]
        self._durations = self._buckets[REQUEST_DURATION.name]
        self._overheads = self._buckets[OVERHEAD.name]
        self._first_tokens = self._buckets[TIME_TO_FIRST_TOKEN.name]
        self._calls = self._buckets[EXPERT_CALLS.name]
        self._tokens = self._values[TOKENS.name]
        self._costs = self._values[COST.name]
        self._decisions = self._values[DECISIONS.name]

    # -- the request path: a few dict and list operations each, written out rather than
    # -- shared through helpers, whose calls would cost as much as the work.

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
        key = (route, method, model, expert, status)
        self._requests[key] = self._requests.get(key, 0.0) + 1.0
        counts = self._durations.get((route, method))
        if counts is None:
            counts = self._durations[route, method] = _empty(REQUEST_DURATION)
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1.0
        counts[-1] += seconds
        if overhead is not None:
            counts = self._overheads.get((route,))
            if counts is None:
                counts = self._overheads[route,] = _empty(OVERHEAD)
            counts[bisect_left(OVERHEAD_BUCKETS, overhead)] += 1.0
            counts[-1] += overhead
        if first_token is not None:
            counts = self._first_tokens.get((expert,))
            if counts is None:
                counts = self._first_tokens[expert,] = _empty(TIME_TO_FIRST_TOKEN)
            counts[bisect_left(LATENCY_BUCKETS, first_token)] += 1.0
            counts[-1] += first_token

    def rate_limited(self, route: str) -> None:
        _add(self._values[RATE_LIMITED.name], (route,), 1.0)

    def call(
        self,
        expert: str,
        outcome: str,
        seconds: float,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
    ) -> None:
        counts = self._calls.get((expert, outcome))
        if counts is None:
            counts = self._calls[expert, outcome] = _empty(EXPERT_CALLS)
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1.0
        counts[-1] += seconds
        tokens = self._tokens
        if input_tokens:
            key = (expert, "input")
            tokens[key] = tokens.get(key, 0.0) + input_tokens
        if output_tokens:
            key = (expert, "output")
            tokens[key] = tokens.get(key, 0.0) + output_tokens
        if cost:
            _add(self._costs, (expert,), cost)

    def decision(self, gate: str, expert: str, strategy: str, confidence: str) -> None:
        key = (gate, expert, strategy, confidence)
        self._decisions[key] = self._decisions.get(key, 0.0) + 1.0

    def fallback(self, expert: str) -> None:
        _add(self._values[FALLBACKS.name], (expert,), 1.0)

    def retry(self, expert: str) -> None:
        _add(self._values[RETRIES.name], (expert,), 1.0)

    # -- the scrape ----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        for spec in SPECS:
            yield (
                _histogram(spec, self._buckets[spec.name])
                if spec.buckets
                else _counter(spec, self._values[spec.name])
            )


def _add(values: dict[Key, float], key: Key, amount: float) -> None:
    values[key] = values.get(key, 0.0) + amount


def _empty(spec: Spec) -> list[float]:
    """A histogram series' counts: one per bucket and +Inf (Prometheus buckets include their
    upper bound, hence ``bisect_left``), then the sum."""
    return [0.0] * (len(spec.buckets or ()) + 2)


def _counter(spec: Spec, values: dict[Key, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(spec.name, spec.doc, labels=spec.labels)
    for key, value in values.items():
        family.add_metric(key, value)
    return family


def _histogram(spec: Spec, series: dict[Key, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(spec.name, spec.doc, labels=spec.labels)
    bounds = [f"{bound:g}" for bound in spec.buckets or ()] + ["+Inf"]
    for key, counts in series.items():
        cumulative, running = [], 0.0
        for bound, count in zip(bounds, counts, strict=False):
            running += count
            cumulative.append((bound, running))
        family.add_metric(key, cumulative, sum_value=counts[-1])
    return family
