"""Built-in scorers: judges of an answer that a ``cascade`` (or any combiner) consults.

- ``answer-check``: signs a careful reader would notice: an empty or truncated answer, a refusal
  or admitted uncertainty, calculator annotations (``<<6*4=25>>``) that do not add up, and
  self-corrections. No model, no cost.
- ``judge``: asks an expert for its confidence that the answer is correct, and reads a number
  out of whatever it says; an answer with no usable number counts as "unsure" (0.5) and the
  reason says so.

Other plugins add scorers through the ``moe_register_scorers`` hook (a predictor trained on
recorded outcomes, say).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import Field

from moe_core.answers import answer_check
from moe_core.errors import MoEError
from moe_core.models import ChatRequest, ExpertCard, ExpertResult
from moe_core.parts import Scorer, Verdict, require_known_experts
from moe_core.plugins import Options
from moe_core.run import Run

JUDGE_PROMPT = (
    "Question:\n{question}\n\nProposed answer:\n{answer}\n\n"
    "How confident are you that the proposed answer is correct and complete? Reply with a single "
    "number from 0 (surely wrong) to 100 (surely right)."
)


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


class AnswerCheckScorer(Scorer):
    """No-cost signs of a bad answer (see :func:`answer_check`)."""

    async def score(self, run: Run, answer: ExpertResult) -> Verdict:
        doubt = answer_check(answer)
        return Verdict(doubt, f"answer-check scored it {doubt:.2f}")


class JudgeScorerOptions(Options):
    expert: str = Field(description="The expert that judges")
    max_tokens: int = Field(64, ge=1, description="Room for the judge's reply")


class JudgeScorer(Scorer):
    """An expert's stated confidence that the answer is right."""

    options: JudgeScorerOptions

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        require_known_experts(experts, "combiner.scorer_options", {"expert": self.options.expert})

    async def score(self, run: Run, answer: ExpertResult) -> Verdict:
        prompt = JUDGE_PROMPT.format(question=run.request.last_user_text(), answer=answer.content)
        request = ChatRequest(
            messages=[{"role": "user", "content": prompt}], max_tokens=self.options.max_tokens
        )
        try:
            reply = await run.call(self.options.expert, request)
        except MoEError as exc:
            return Verdict(
                0.5, f"the judge failed ({exc.message}), so the answer counted as unsure"
            )
        confidence = judge_confidence(reply.content)
        if confidence is None:
            return Verdict(0.5, f"the judge gave no usable number ({reply.content[:80]!r}): unsure")
        return Verdict(1 - confidence, f"the judge was {confidence:.0%} confident")
