"""Every Prometheus metric the gateway exports, defined once, with bounded label values.

Label values come from the configuration (expert, gate and tracker names, route templates),
from small fixed sets (methods, statuses, error codes, confidence buckets) or are folded into
``other``: never from request text or caller identities, so the number of series stays bounded
whatever clients send.

Two :class:`Recorder` implementations keep the figures: :mod:`moe_metrics.inprocess` in plain
numbers (one gateway process, the default) and :mod:`moe_metrics.multiprocess` in
prometheus_client's metric objects, whose files its multiprocess collector sums across
``moe serve --workers`` processes. Both export the same families.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Protocol

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Seconds: a request or an expert call, from a local model's milliseconds to a long answer."""
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
"""Seconds: the gateway's own share of a request, normally well under a millisecond."""
CONFIDENCE_BUCKETS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
"""Upper bounds of the confidence buckets decisions are counted in."""
# One more label than bounds: a confidence above 1 (a gate's rounding) counts as 1.
_CONFIDENCE_LABELS = (*(f"{bound:g}" for bound in CONFIDENCE_BUCKETS), "1")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CODE = re.compile(r"^[a-z0-9_]{1,48}$")


def method_label(method: str) -> str:
    """The HTTP method, or ``other`` for the other tokens HTTP allows as methods."""
    return method if method in METHODS else "other"


def code_label(code: str | None) -> str:
    """An error code as a label: the gateway's codes are short snake_case words; anything else
    (an upstream's own vocabulary) is ``error``."""
    return code if code and _CODE.match(code) else "error"


def confidence_label(confidence: float | None) -> str:
    """The bucket a decision's confidence falls in, named by its upper bound (``0.9``: above
    0.8, at most 0.9), or ``none`` for a decision that states no confidence.

    A label of the decisions counter rather than a histogram of its own: one increment per
    decision instead of a sum and a bucket, on a path every request takes."""
    if confidence is None:
        return "none"
    return _CONFIDENCE_LABELS[bisect_left(CONFIDENCE_BUCKETS, confidence)]


@dataclass(frozen=True)
class Spec:
    """One metric family: a counter, or a histogram when it has buckets."""

    name: str
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] | None = None


# What HTTP sees (moe_metrics.http).
REQUESTS = Spec(
    "moe_requests",
    "HTTP requests answered, by route template, method, requested model, answering expert and "
    "status code.",
    ("route", "method", "model", "expert", "status"),
)
REQUEST_DURATION = Spec(
    "moe_request_duration_seconds",
    "Whole HTTP request, until the handler returns (a stream: until its last chunk).",
    ("route", "method"),
    LATENCY_BUCKETS,
)
OVERHEAD = Spec(
    "moe_gateway_overhead_seconds",
    "Gateway time before the response's first byte minus time waiting on experts; the "
    "x-moe-overhead-ms header of the same response.",
    ("route",),
    OVERHEAD_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Spec(
    "moe_time_to_first_token_seconds",
    "Streamed answers: from the request's arrival to the first chunk sent to the client.",
    ("expert",),
    LATENCY_BUCKETS,
)
RATE_LIMITED = Spec(
    "moe_rate_limited",
    "Requests refused with 429 rate_limit_exceeded (a key's limit, or an expert's with no "
    "fallback left).",
    ("route",),
)
# What the pipeline's events say (moe_metrics.tracker).
EXPERT_CALLS = Spec(
    "moe_expert_call_duration_seconds",
    "Expert calls and how long each took (a stream: until its last chunk), by outcome: ok or "
    "the error code; the _count series counts the calls.",
    ("expert", "outcome"),
    LATENCY_BUCKETS,
)
TOKENS = Spec(
    "moe_expert_tokens",
    "Tokens the experts reported, by type: input (prompt) or output (completion).",
    ("expert", "type"),
)
COST = Spec(
    "moe_expert_cost_usd",
    "Cost of successful expert calls in US dollars, from reported usage and the cards.",
    ("expert",),
)
FALLBACKS = Spec(
    "moe_fallbacks",
    "Experts given up on within an answered request (failed, refused or timed out) so that the "
    "next candidate was tried.",
    ("expert",),
)
RETRIES = Spec(
    "moe_expert_retries",
    "Calls to an expert that already failed earlier in the same HTTP request.",
    ("expert",),
)
DECISIONS = Spec(
    "moe_gate_decisions",
    "Routing decisions, by gate (direct: the request named its expert), first chosen expert, "
    "strategy and confidence bucket (its upper bound: 0.9 is above 0.8, at most 0.9; none: "
    "the gate stated none).",
    ("gate", "expert", "strategy", "confidence"),
)
SPECS = (
    REQUESTS,
    REQUEST_DURATION,
    OVERHEAD,
    TIME_TO_FIRST_TOKEN,
    RATE_LIMITED,
    EXPERT_CALLS,
    TOKENS,
    COST,
    FALLBACKS,
    RETRIES,
    DECISIONS,
)


class Recorder(Protocol):
    """What a request adds to the metrics: one call per thing that happened."""

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
        """An HTTP request ended; ``overhead`` is ``None`` where no response went out (the
        request was cut), ``first_token`` where it was not streamed."""

    def rate_limited(self, route: str) -> None: ...

    def call(
        self,
        expert: str,
        outcome: str,
        seconds: float,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
    ) -> None: ...

    def decision(self, gate: str, expert: str, strategy: str, confidence: str) -> None: ...

    def fallback(self, expert: str) -> None: ...

    def retry(self, expert: str) -> None: ...
