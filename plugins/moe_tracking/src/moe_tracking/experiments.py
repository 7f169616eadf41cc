"""The ``ab-tests`` tracker: compare two experts on one task type with real traffic.

A test names two experts, a task type, the share of traffic sent to ``expert_b``, a minimum of
samples per arm and a duration. Assignment is deterministic: a hash of the test id and the
caller's id (``user`` in the request, else ``moe.metadata.user_id``, else the prompt itself), so
a user stays in one arm on every instance. Gates ask through
:class:`moe_core.signals.ExperimentSignal`; requests routed as assigned are the test's samples.
Each arm counts successes (from the request's outcome) and, from feedback, quality scores. The
analysis compares success rates with a two-proportion z-test and feedback scores with Welch's
t-test, and recommends a winner only when the difference is significant (p < ``alpha``), larger
than ``min_effect`` and both arms reached ``min_samples``.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from moe_core.errors import InvalidRequest, NotFound
from moe_core.events import Event, RequestFinished, RouteDecided
from moe_core.models import ChatRequest
from moe_core.plugins import Options
from moe_tracking.base import StoredTracker
from moe_tracking.stats import TestResult, two_proportion_z_test, welch_t_test
from moe_tracking.store import Hash

_TEST = "abtest:"
_SAMPLE = "absample:"
ARMS = ("a", "b")


class ABTestSpec(BaseModel):
    """``POST /v1/ab-tests``: what to compare."""

    model_config = ConfigDict(extra="forbid")

    expert_a: str = Field(min_length=1)
    expert_b: str = Field(min_length=1)
    task_type: str | None = Field(None, description="Only requests of this task type; None: all.")
    traffic_split: float = Field(0.5, gt=0, lt=1, description="Share of traffic sent to expert_b.")
    # Bounded: the spec is stored and served back as JSON, whose integers stop at 64 bits.
    min_samples: int = Field(
        30, ge=2, le=10**9, description="Samples per arm before a winner is named."
    )
    duration_days: float = Field(7.0, gt=0, le=3650)

    @model_validator(mode="after")
    def _two_experts(self) -> ABTestSpec:
        if self.expert_a == self.expert_b:
            raise ValueError("expert_a and expert_b must differ")
        return self


class ABTestOptions(Options):
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the tests.")
    min_effect: float = Field(
        0.05, ge=0, description="Smallest relative difference worth switching for (seed: 5%)."
    )
    remember_days: float = Field(30.0, gt=0, description="How long a sample can get feedback.")


def unit_of(request: ChatRequest) -> str:
    """Who a request comes from, for a stable assignment."""
    metadata = request.hints.metadata
    for value in (request.user, metadata.get("user_id"), metadata.get("request_id")):
        if value:
            return f"user:{value}"
    return "prompt:" + request.last_user_text()


def bucket(test_id: str, unit: str) -> float:
    """A uniform number in [0, 1) from a test id and a unit, the same on every instance."""
    digest = hashlib.sha256(f"{test_id}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ABTestTracker(StoredTracker):
    """A/B tests between experts: deterministic assignment, outcomes, significance."""

    options: ABTestOptions
    observes = (RouteDecided, RequestFinished)

    def __init__(self, name: str, options: ABTestOptions) -> None:
        super().__init__(name, options)
        self._tests: dict[str, Hash] = {}
        self._pending: dict[str, tuple[str, str]] = {}

    # -- managing tests ------------------------------------------------------------------

    async def start_test(self, spec: ABTestSpec, known_experts: set[str]) -> dict[str, Any]:
        for field in ("expert_a", "expert_b"):
            if getattr(spec, field) not in known_experts:
                raise InvalidRequest(
                    f"Invalid value for '{field}': {getattr(spec, field)!r} is not a configured "
                    "expert",
                    param=field,
                    code="invalid_value",
                )
        test_id = "ab-" + uuid.uuid4().hex[:12]
        now = time.time()
        self._tests[test_id] = await self.store.update(
            _TEST + test_id,
            set={
                "id": test_id,
                "expert_a": spec.expert_a,
                "expert_b": spec.expert_b,
                "task_type": spec.task_type or "",
                "traffic_split": spec.traffic_split,
                "min_samples": float(spec.min_samples),
                "started_at": now,
                "ends_at": now + spec.duration_days * 86400,
                "status": "running",
            },
        )
        return self.describe(test_id)

    async def start_experiment(
        self, fields: Mapping[str, Any], experts: Collection[str]
    ) -> dict[str, Any]:
        """:class:`moe_core.signals.ExperimentRunner`: :meth:`start_test` from plain fields."""
        return await self.start_test(ABTestSpec.model_validate(dict(fields)), set(experts))

    async def _load(self, test_id: str) -> Hash:
        test = await self.store.get(_TEST + test_id)
        if not test:
            raise NotFound(f"No A/B test with id {test_id!r}", code="ab_test_not_found")
        self._tests[test_id] = test
        return test

    async def stop_test(self, test_id: str) -> dict[str, Any]:
        await self._load(test_id)
        self._tests[test_id] = await self.store.update(
            _TEST + test_id, set={"status": "stopped", "stopped_at": time.time()}
        )
        return self.describe(test_id)

    async def list_tests(self) -> list[dict[str, Any]]:
        await self.refresh()
        return [self.describe(test_id) for test_id in sorted(self._tests)]

    def _running(self, test: Hash) -> bool:
        return test.get("status") == "running" and float(test.get("ends_at", 0)) > time.time()

    def describe(self, test_id: str) -> dict[str, Any]:
        test = self._tests[test_id]
        status = str(test.get("status"))
        if status == "running" and not self._running(test):
            status = "finished"
        return {
            "id": test_id,
            "expert_a": test.get("expert_a"),
            "expert_b": test.get("expert_b"),
            "task_type": test.get("task_type") or None,
            "traffic_split": float(test.get("traffic_split", 0.5)),
            "min_samples": int(float(test.get("min_samples", 0))),
            "started_at": float(test.get("started_at", 0)),
            "ends_at": float(test.get("ends_at", 0)),
            "status": status,
            "samples": {arm: int(float(test.get(f"{arm}_n", 0))) for arm in ARMS},
        }

    # -- routing -------------------------------------------------------------------------

    def assignment(self, request: ChatRequest, task_type: str | None) -> str | None:
        test_id = self._test_for(task_type)
        if test_id is None:
            return None
        return self._arm_expert(test_id, request)[1]

    def _test_for(self, task_type: str | None) -> str | None:
        """The running test that covers this task type (the oldest, if several)."""
        found = None
        for test_id, test in self._tests.items():
            covers = self._running(test) and (test.get("task_type") or None) in (None, task_type)
            if covers and (found is None or test["started_at"] < self._tests[found]["started_at"]):
                found = test_id
        return found

    def _arm_expert(self, test_id: str, request: ChatRequest) -> tuple[str, str]:
        test = self._tests[test_id]
        arm = "b" if bucket(test_id, unit_of(request)) < float(test["traffic_split"]) else "a"
        return arm, str(test[f"expert_{arm}"])

    # -- events --------------------------------------------------------------------------

    async def observe(self, event: Event) -> None:
        if isinstance(event, RouteDecided):
            test_id = self._test_for(event.request.hints.task_type)
            if test_id is None:
                return
            arm, expert = self._arm_expert(test_id, event.request)
            if event.decision.experts[0] == expert:
                self._pending[event.request_id] = (test_id, arm)
        elif isinstance(event, RequestFinished):
            sample = self._pending.pop(event.request_id, None)
            if sample is None:
                return
            test_id, arm = sample
            cost = (event.metadata.cost_usd if event.metadata else None) or 0.0
            self._tests[test_id] = await self.store.update(
                _TEST + test_id,
                incr={
                    f"{arm}_n": 1.0,
                    f"{arm}_ok": float(event.ok),
                    f"{arm}_latency_sum": event.latency_ms,
                    f"{arm}_cost_sum": cost,
                },
            )
            await self.store.update(
                _SAMPLE + event.request_id,
                set={"test": test_id, "arm": arm},
                ttl_s=self.options.remember_days * 86400,
            )

    async def on_feedback(self, request_id: str, score: float) -> None:
        """Count a feedback score for the arm that served ``request_id``, if it was a sample."""
        sample = await self.store.get(_SAMPLE + request_id)
        if not sample:
            return
        test_id, arm = str(sample["test"]), str(sample["arm"])
        self._tests[test_id] = await self.store.update(
            _TEST + test_id,
            incr={f"{arm}_q_n": 1.0, f"{arm}_q_sum": score, f"{arm}_q_sq": score * score},
        )

    async def refresh(self) -> None:
        for key, test in (await self.store.scan(_TEST)).items():
            self._tests[key.removeprefix(_TEST)] = test

    # -- analysis ------------------------------------------------------------------------

    async def analyse(self, test_id: str) -> dict[str, Any]:
        """Each arm's figures, the significance tests, a winner (or none) and a recommendation."""
        test = await self._load(test_id)

        def n(name: str) -> float:
            return float(test.get(name, 0.0))

        arms = {}
        for arm in ARMS:
            count, q_n = n(f"{arm}_n"), n(f"{arm}_q_n")
            q_mean = n(f"{arm}_q_sum") / q_n if q_n else None
            q_var = (
                max(0.0, (n(f"{arm}_q_sq") - q_n * q_mean**2) / (q_n - 1))
                if q_mean is not None and q_n > 1
                else None
            )
            arms[arm] = {
                "expert": test[f"expert_{arm}"],
                "samples": int(count),
                "success_rate": n(f"{arm}_ok") / count if count else None,
                "avg_latency_ms": n(f"{arm}_latency_sum") / count if count else None,
                "avg_cost_usd": n(f"{arm}_cost_sum") / count if count else None,
                "feedback": int(q_n),
                "avg_feedback_score": q_mean,
                "_var": q_var,
            }
        a, b = arms["a"], arms["b"]
        tests: dict[str, TestResult] = {}
        if a["samples"] and b["samples"]:
            tests["success_rate"] = two_proportion_z_test(
                round(n("a_ok")), a["samples"], round(n("b_ok")), b["samples"]
            )
        if a["_var"] is not None and b["_var"] is not None:
            tests["feedback_score"] = welch_t_test(
                a["avg_feedback_score"], a["_var"], a["feedback"],
                b["avg_feedback_score"], b["_var"], b["feedback"],
            )  # fmt: skip
        for arm in arms.values():
            arm.pop("_var")
        winner, metric, recommendation = self._verdict(test, arms, tests)
        best = tests.get(metric or "") if metric else None
        return {
            **self.describe(test_id),
            "arms": arms,
            "tests": {
                name: {"test": r.test, "statistic": _finite(r.statistic), "p_value": r.p_value}
                for name, r in tests.items()
            },
            "winner": winner,
            "decided_by": metric,
            "confidence": None if best is None else round(1 - best.p_value, 6),
            "recommendation": recommendation,
        }

    def _verdict(
        self, test: Hash, arms: dict[str, dict[str, Any]], tests: dict[str, TestResult]
    ) -> tuple[str | None, str | None, str]:
        need = int(float(test.get("min_samples", 0)))
        short = {arm: need - arms[arm]["samples"] for arm in ARMS if arms[arm]["samples"] < need}
        if short:
            missing = ", ".join(f"{arms[arm]['expert']} needs {k} more" for arm, k in short.items())
            return None, None, f"Keep the test running: not enough samples yet ({missing})."
        # Feedback quality decides when both arms have it; otherwise the success rate does.
        metrics = (("feedback_score", "avg_feedback_score"), ("success_rate", "success_rate"))
        for metric, field in metrics:
            result = tests.get(metric)
            if result is None:
                continue
            value_a, value_b = arms["a"][field], arms["b"][field]
            better, worse = ("a", "b") if value_a >= value_b else ("b", "a")
            top, low = arms[better][field], arms[worse][field]
            effect = (top - low) / low if low else math.inf if top > low else 0.0
            expert = arms[better]["expert"]
            if result.p_value < self.options.alpha and effect > self.options.min_effect:
                return (
                    str(expert),
                    metric,
                    f"Route {test.get('task_type') or 'all'} traffic to {expert}: its "
                    f"{metric.replace('_', ' ')} is {top:.3f} against {low:.3f} "
                    f"({effect:+.1%}, p = {result.p_value:.4f}, {result.test}).",
                )
            reason = (
                f"p = {result.p_value:.4f} is not below {self.options.alpha}"
                if result.p_value >= self.options.alpha
                else f"the difference ({effect:.1%}) is under {self.options.min_effect:.0%}"
            )
            return (
                None,
                metric,
                f"No significant difference in {metric.replace('_', ' ')} ({reason}); keep the "
                "current routing, or run longer to detect smaller effects.",
            )
        return None, None, "No outcomes to compare yet."

    def snapshot(self) -> dict[str, Any]:
        return {"tests": [self.describe(test_id) for test_id in sorted(self._tests)]}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
