"""The ``cascade`` combiner: a cheap expert first, a stronger one only when needed.

Experts are tried from cheapest to strongest. After each answer but the last, a scorer estimates
how likely the answer is to need escalation (0: keep it, 1: surely wrong); at or above
``threshold`` the next expert is asked, and ``moe_metadata.fallbacks`` records why the earlier
answer was set aside. Scorers:

- ``answer-check``: signs a careful reader would notice: an empty or truncated answer, a refusal
  or admitted uncertainty, calculator annotations (``<<6*4=25>>``) that do not add up, and
  self-corrections. No model, no cost.
- ``judge``: asks the expert named ``judge`` for its confidence that the answer is correct, and
  reads a number out of whatever it says; an answer with no usable number counts as "unsure"
  (0.5) and the metadata says so.

An answer is only returned once accepted, so the cheap stage is not streamed; when the cascade
escalates, the last expert's answer streams as it is generated.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping
from typing import Literal

from pydantic import Field, model_validator

from moe_core.errors import MoEError
from moe_core.models import ChatRequest, Delta, ExpertCard, ExpertResult
from moe_core.parts import Combiner, require_known_experts
from moe_core.plugins import CombinerOptions
from moe_core.run import Run

CALCULATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
HEDGES = re.compile(
    r"\b(however|actually|wait|mistake|correction|instead|approximately|unclear|assum\w*)\b"
)
UNSURE = re.compile(
    r"\b(i'?m not sure|i am not sure|i don'?t know|i cannot|i can'?t|unable to|as an ai|"
    r"not enough information|impossible to (?:say|tell|determine))\b"
)
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/()%]+$")
JUDGE_PROMPT = (
    "Question:\n{question}\n\nProposed answer:\n{answer}\n\n"
    "How confident are you that the proposed answer is correct and complete? Reply with a single "
    "number from 0 (surely wrong) to 100 (surely right)."
)


def wrong_calculations(answer: str) -> tuple[int, int]:
    """How many ``<<expr=value>>`` annotations an answer has, and how many do not add up."""
    calls = CALCULATION.findall(answer)
    wrong = 0
    for expression, value in calls:
        expression = expression.replace(",", "").replace("x", "*")
        try:
            if not _ARITHMETIC.match(expression):
                raise ValueError(expression)
            # Only digits, dots, brackets and operators get here (checked just above).
            computed = eval(expression, {"__builtins__": {}})
            wrong += not math.isclose(computed, float(value.replace(",", "")), rel_tol=1e-6)
        except (ValueError, SyntaxError, ZeroDivisionError, TypeError, OverflowError):
            wrong += 1
    return len(calls), wrong


def answer_check(answer: ExpertResult) -> float:
    """A no-cost estimate that an answer needs escalating, from what is visible in it."""
    text = answer.content.strip()
    if not text:
        return 1.0
    lowered = text.lower()
    score = 0.0
    if answer.finish_reason == "length":
        score += 0.4
    if UNSURE.search(lowered):
        score += 0.5
    if wrong_calculations(text)[1]:
        score += 0.5
    score += min(0.3, 0.1 * len(HEDGES.findall(lowered)))
    return min(1.0, score)


def judge_confidence(reply: str) -> float | None:
    """The judge's confidence (0..1) read out of a reply that may ramble; None if there is none."""
    lowered = reply.lower()
    labelled = re.search(r"(?:confidence|score|rating)\D{0,20}(\d{1,3}(?:\.\d+)?)", lowered)
    candidates = [labelled.group(1)] if labelled else []
    candidates += re.findall(r"(\d{1,3}(?:\.\d+)?)\s*(?:%|/\s*100|out of 100)", lowered)
    # Otherwise the last number: judges that explain themselves tend to conclude with it.
    candidates += reversed(re.findall(r"\b\d{1,3}(?:\.\d+)?\b", lowered))
    for candidate in candidates:
        value = float(candidate)
        if 0 <= value <= 100:
            return value / 100
    return None


class CascadeOptions(CombinerOptions):
    experts: list[str] = Field(
        default_factory=list, description="Cheapest first; default: the decision's, then fallbacks"
    )
    scorer: Literal["answer-check", "judge"] = "answer-check"
    judge: str | None = Field(None, description="The expert that judges, for scorer: judge")
    threshold: float = Field(0.5, ge=0, le=1, description="Escalate at or above this score")

    @model_validator(mode="after")
    def _judge_named(self) -> CascadeOptions:
        if self.scorer == "judge" and not self.judge:
            raise ValueError("scorer: judge needs judge: <expert name>")
        return self


class CascadeCombiner(Combiner):
    """Cheapest expert first; escalate while the scorer doubts the answer."""

    options: CascadeOptions

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        named = {f"experts[{i}]": name for i, name in enumerate(self.options.experts)}
        require_known_experts(experts, "combiner", {**named, "judge": self.options.judge})

    def _experts(self, run: Run) -> list[str]:
        if self.options.experts:
            return list(self.options.experts)
        return list(dict.fromkeys([*run.decision.experts, *run.decision.fallbacks]))

    async def _score(self, run: Run, answer: ExpertResult) -> tuple[float, str]:
        if self.options.scorer == "answer-check":
            score = answer_check(answer)
            return score, f"answer-check scored it {score:.2f}"
        assert self.options.judge is not None
        prompt = JUDGE_PROMPT.format(question=run.request.last_user_text(), answer=answer.content)
        request = ChatRequest(messages=[{"role": "user", "content": prompt}], max_tokens=64)
        try:
            reply = await run.call(self.options.judge, request)
        except MoEError as exc:
            return 0.5, f"the judge failed ({exc.message}), so the answer counted as unsure"
        confidence = judge_confidence(reply.content)
        if confidence is None:
            return 0.5, f"the judge gave no usable number ({reply.content[:80]!r}): unsure"
        return 1 - confidence, f"the judge was {confidence:.0%} confident"

    async def _accepted(self, run: Run, experts: list[str]) -> ExpertResult | None:
        """The first answer the scorer accepts among all but the last expert, if any."""
        for name in experts[:-1]:
            try:
                answer = await run.call(name)
            except MoEError as exc:
                run.record_fallback(name, exc)
                continue
            score, why = await self._score(run, answer)
            if score < self.options.threshold:
                return answer
            run.record_fallback(
                name, MoEError(f"escalated: {why}, at or above {self.options.threshold}")
            )
        return None

    async def complete(self, run: Run) -> ExpertResult:
        experts = self._experts(run)
        accepted = await self._accepted(run, experts)
        return accepted if accepted is not None else await run.call(experts[-1])

    async def stream(self, run: Run) -> AsyncIterator[Delta]:
        experts = self._experts(run)
        accepted = await self._accepted(run, experts)
        if accepted is not None:
            yield Delta.whole(accepted)
            return
        async for delta in run.stream(experts[-1]):
            yield delta
