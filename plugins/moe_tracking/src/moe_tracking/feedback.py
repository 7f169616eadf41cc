"""The ``feedback`` tracker: the learning loop from outcomes to the weights gates read.

It remembers each finished request (who answered, the task type) for ``remember_days``, so a
client can later ``POST /v1/feedback`` with just the request id (on a shared store before the
answer is returned, so any instance can take the feedback; on a single-instance store just
after). Every feedback is appended to a durable log before it is acknowledged, then folded into
per expert x task figures: the seed's
feedback score (outcome, quality, rating, PR merged or reverted) as an exponential moving
average starting from neutral, which :meth:`learned_weight` turns into a weight (1.0 neutral,
0..2) for :class:`moe_core.signals.WeightSignal`.

Clients retry a post whose answer they did not get, which would count one judgement twice; a
post with an ``Idempotency-Key`` is counted once, and its retries get the first answer back
(:meth:`FeedbackTracker.earlier`).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from moe_core.errors import InvalidRequest, MoEError, NotFound
from moe_core.events import Event, RequestFinished, RequestStarted
from moe_core.plugins import Options
from moe_tracking.base import StoredTracker
from moe_tracking.store import Hash

log = structlog.get_logger(__name__)

ALL_TASKS = "*"
NEUTRAL = 0.5
_REQUEST = "request:"
_FEEDBACK = "feedback:"
_WEIGHT = "weight:"
_ANSWER = "idempotent:"
_RECORDING = "idempotent-recording:"
RECORDING_S = 30.0
"""How long a post with an ``Idempotency-Key`` holds the key while it records its feedback."""
FEEDBACK_LOG = "feedback-log"
OUTCOME_SCORES = {"success": 1.0, "partial": 0.5, "failure": 0.0}


class Feedback(BaseModel):
    """What a client may say about an answer; at least one judgement is required."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=160, pattern=r"^[A-Za-z0-9._:-]+$")
    outcome: Literal["success", "partial", "failure"] | None = None
    quality_score: float | None = Field(None, ge=0, le=1)
    rating: int | None = Field(None, ge=1, le=5, description="A user's rating, 1 to 5.")
    pr_merged: bool | None = None
    pr_reverted: bool | None = None
    comment: str | None = Field(None, max_length=4000)
    expert: str | None = Field(
        None, description="Who answered; needed only when the gateway does not know the request."
    )
    task_type: str | None = None

    @model_validator(mode="after")
    def _judges_something(self) -> Feedback:
        judgements = (
            self.outcome,
            self.quality_score,
            self.rating,
            self.pr_merged,
            self.pr_reverted,
        )
        if all(value is None for value in judgements):
            raise ValueError(
                "feedback needs at least one of outcome, quality_score, rating, pr_merged, "
                "pr_reverted"
            )
        return self

    @property
    def bare_request_id(self) -> str:
        """The id as the gateway keeps it (responses carry it as ``chatcmpl-<id>``)."""
        return self.request_id.removeprefix("chatcmpl-")

    def score(self) -> float:
        """The seed's score in 0..1: the mean of outcome, quality and rating (1-5 to 0-1), then
        +0.2 for a merged PR and -0.5 for a reverted one."""
        parts = []
        if self.outcome is not None:
            parts.append(OUTCOME_SCORES[self.outcome])
        if self.quality_score is not None:
            parts.append(self.quality_score)
        if self.rating is not None:
            parts.append((self.rating - 1) / 4)
        score = sum(parts) / len(parts) if parts else NEUTRAL
        if self.pr_merged:
            score += 0.2
        if self.pr_reverted:
            score -= 0.5
        return min(1.0, max(0.0, score))


class IdempotencyKeyInUse(MoEError):
    """A post with this ``Idempotency-Key`` is still being recorded: retry to get its answer."""

    status = 409
    type = "invalid_request_error"
    code = "idempotency_key_in_use"


class IdempotencyKeyReused(MoEError):
    """This ``Idempotency-Key`` was sent with other feedback: this one needs a key of its own."""

    status = 422
    type = "invalid_request_error"
    code = "idempotency_key_reused"


class FeedbackOptions(Options):
    alpha: float = Field(0.1, gt=0, le=1, description="Weight of the newest feedback score.")
    remember_days: float = Field(7.0, gt=0, description="How long request ids can get feedback.")
    log_max_records: int = Field(
        100_000, ge=1, description="Newest feedback records kept in the log (older ones go)."
    )


class FeedbackTracker(StoredTracker):
    """Feedback on requests, folded into learned weights per expert and task type."""

    options: FeedbackOptions
    observes = (RequestStarted, RequestFinished)

    def __init__(self, name: str, options: FeedbackOptions) -> None:
        super().__init__(name, options)
        self._weights: dict[tuple[str, str], Hash] = {}
        self._tasks: OrderedDict[str, str | None] = OrderedDict()

    async def observe(self, event: Event) -> None:
        if isinstance(event, RequestStarted):
            self._tasks[event.request_id] = event.request.hints.task_type
            while len(self._tasks) > 10_000:  # requests that never finished
                self._tasks.popitem(last=False)
        elif isinstance(event, RequestFinished):
            task = self._tasks.pop(event.request_id, None)
            if event.metadata is None or not event.metadata.experts_used:
                return
            record: Hash = {
                "expert": event.metadata.experts_used[-1],
                "experts": json.dumps(event.metadata.experts_used),
                "task": task or "",
                "finished_at": time.time(),
            }
            # Written before the answer is sent (RequestFinished comes first): a client that
            # got an answer can give feedback on it, even after the gateway was killed.
            await self.store.update(
                _REQUEST + event.request_id, set=record, ttl_s=self.options.remember_days * 86400
            )

    async def request(self, request_id: str) -> Hash:
        """What the gateway remembers of a request (empty if unknown or forgotten)."""
        return await self.store.get(_REQUEST + request_id.removeprefix("chatcmpl-"))

    async def record(self, feedback: Feedback, known_experts: set[str]) -> dict[str, Any]:
        """Store one feedback durably and update the learned weights; returns what was stored.

        Raises :class:`NotFound` for a request id the gateway does not know unless the feedback
        names its ``expert``, and :class:`InvalidRequest` for an expert not configured.
        """
        remembered = await self.request(feedback.bare_request_id)
        expert = feedback.expert or (str(remembered["expert"]) if remembered else None)
        if expert is None:
            raise NotFound(
                f"No request with id {feedback.request_id!r} is known (never seen, or older than "
                f"{self.options.remember_days:g} days); send 'expert' (and 'task_type') with the "
                "feedback to record it anyway",
                code="request_not_found",
            )
        if expert not in known_experts:
            raise InvalidRequest(
                f"Invalid value for 'expert': {expert!r} is not a configured expert",
                param="expert",
                code="invalid_value",
            )
        task = feedback.task_type or (str(remembered.get("task") or "") or None)
        score = feedback.score()
        stored = {
            **feedback.model_dump(exclude_none=True),
            "request_id": feedback.bare_request_id,
            "expert": expert,
            "task_type": task,
            "score": round(score, 6),
            "matched_request": bool(remembered),
            "received_at": time.time(),
        }
        # The log is written first: it is the record of truth, the figures derive from it.
        sequence = await self.store.append(FEEDBACK_LOG, stored, keep=self.options.log_max_records)
        await self.store.update(
            _FEEDBACK + feedback.bare_request_id,
            set={"json": json.dumps(stored), "sequence": float(sequence)},
            ttl_s=self.options.remember_days * 86400 * 4,
        )
        for task_key in {ALL_TASKS, task or ALL_TASKS}:
            self._weights[(expert, task_key)] = await self.store.update(
                f"{_WEIGHT}{expert}:{task_key}",
                incr=_counts(feedback),
                ema={"score_ema": (score, self.options.alpha, NEUTRAL)},
                set={"expert": expert, "task": task_key, "updated_at": time.time()},
            )
        return {**stored, "sequence": sequence}

    async def earlier(self, key: str, feedback: Feedback) -> dict[str, Any] | None:
        """The answer given to ``feedback`` sent earlier with this ``Idempotency-Key``; ``None``
        when the key is new, and the caller then holds it until :meth:`answered` (or
        :meth:`abandon`).

        Raises :class:`IdempotencyKeyReused` when the key came with other feedback, and
        :class:`IdempotencyKeyInUse` while another post holds it.
        """
        seen = await self.store.get(_ANSWER + key)
        if not seen:
            if not await self.store.claim(_RECORDING + key, RECORDING_S):
                raise IdempotencyKeyInUse(
                    "Feedback with this Idempotency-Key is being recorded; retry to get its answer",
                    param="Idempotency-Key",
                    headers={"Retry-After": "1"},
                )
            # Another post may have answered and let the key go since the first look.
            seen = await self.store.get(_ANSWER + key)
            if not seen:
                return None
            await self.store.delete(_RECORDING + key)
        if seen["feedback"] != feedback.model_dump_json():
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for different feedback; send new feedback "
                "with a new key",
                param="Idempotency-Key",
            )
        return json.loads(str(seen["answer"]))

    async def answered(self, key: str, feedback: Feedback, stored: Mapping[str, Any]) -> None:
        """Keep the answer to a post with an ``Idempotency-Key`` for its retries, and let the
        key go (written first, so whoever takes the key next finds the answer)."""
        await self.store.update(
            _ANSWER + key,
            set={"feedback": feedback.model_dump_json(), "answer": json.dumps(dict(stored))},
            ttl_s=self.options.remember_days * 86400,
        )
        await self.store.delete(_RECORDING + key)

    async def abandon(self, key: str) -> None:
        """Free an ``Idempotency-Key`` whose post failed, so that a retry can record it."""
        await self.store.delete(_RECORDING + key)

    async def record_feedback(
        self, fields: Mapping[str, Any], experts: Collection[str]
    ) -> dict[str, Any]:
        """:class:`moe_core.signals.FeedbackRecorder`: :meth:`record` from plain fields."""
        return await self.record(Feedback.model_validate(dict(fields)), set(experts))

    def feedback_summary(self, expert: str, task_type: str | None = None) -> dict[str, Any] | None:
        return self.summary(expert, task_type)

    async def get(self, request_id: str) -> dict[str, Any] | None:
        """The latest feedback stored for a request, read from the store (any instance's)."""
        raw = await self.store.get(_FEEDBACK + request_id.removeprefix("chatcmpl-"))
        return json.loads(str(raw["json"])) if raw else None

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self.store.records(FEEDBACK_LOG, limit)

    async def refresh(self) -> None:
        for raw in (await self.store.scan(_WEIGHT)).values():
            self._weights[(str(raw.get("expert", "")), str(raw.get("task", ALL_TASKS)))] = raw

    def learned_weight(self, expert: str, task_type: str | None) -> float:
        raw = self._weights.get((expert, task_type or ALL_TASKS))
        if raw is None:
            return 1.0
        return float(raw.get("score_ema", NEUTRAL)) / NEUTRAL

    def summary(self, expert: str, task_type: str | None = None) -> dict[str, Any] | None:
        """Feedback figures of one expert (the seed's report fields)."""
        raw = self._weights.get((expert, task_type or ALL_TASKS))
        if raw is None:
            return None

        def n(name: str) -> float:
            return float(raw.get(name, 0.0))

        def ratio(part: str, whole: str) -> float | None:
            return round(n(part) / n(whole), 4) if n(whole) else None

        return {
            "feedback": int(n("feedback")),
            "learned_weight": round(self.learned_weight(expert, task_type), 4),
            "avg_score": ratio("score_sum", "feedback"),
            "success_rate": ratio("successes", "outcomes"),
            "avg_quality": ratio("quality_sum", "quality_n"),
            "avg_rating": ratio("rating_sum", "rating_n"),
            "pr_merge_rate": ratio("pr_merged", "pr_n"),
            "pr_revert_rate": ratio("pr_reverted", "pr_n"),
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            f"{expert}:{task}": self.summary(expert, None if task == ALL_TASKS else task)
            for expert, task in sorted(self._weights)
        }


def _counts(feedback: Feedback) -> dict[str, float]:
    counts = {"feedback": 1.0, "score_sum": feedback.score()}
    if feedback.outcome is not None:
        counts |= {"outcomes": 1.0, "successes": float(feedback.outcome == "success")}
    if feedback.quality_score is not None:
        counts |= {"quality_n": 1.0, "quality_sum": feedback.quality_score}
    if feedback.rating is not None:
        counts |= {"rating_n": 1.0, "rating_sum": float(feedback.rating)}
    if feedback.pr_merged is not None or feedback.pr_reverted is not None:
        counts |= {
            "pr_n": 1.0,
            "pr_merged": float(bool(feedback.pr_merged)),
            "pr_reverted": float(bool(feedback.pr_reverted)),
        }
    return counts
