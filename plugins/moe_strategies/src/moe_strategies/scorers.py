"""Built-in scorers: judges of an answer that a ``cascade`` (or any combiner) consults.

- ``answer-check``: signs a careful reader would notice: an empty or truncated answer, a refusal
  or admitted uncertainty, calculator annotations (``<<6*4=25>>``) that do not add up, and
  self-corrections. No model, no cost.
- ``judge``: asks an expert for its confidence that the answer is correct, from 0 to 100, and
  reads a number out of whatever it says, on the scale it states ("8/10") or, without one, as a
  fraction when it plainly is one ("0.9"); an answer with no usable number counts as "unsure"
  (0.5) and the reason says so.

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


_NUMBER = r"(\d{1,3}(?:\.\d+)?)"
# A stated scale: "90%", "90/100", "8/10", "0.9 / 1", "7 out of 100".
_SCALE = r"\s*(%|(?:/|out of)\s*(?:100|10|1)\b)"
_LABELLED = re.compile(rf"(?:confidence|score|rating)\D{{0,20}}{_NUMBER}(?:{_SCALE})?")
_SCALED = re.compile(_NUMBER + _SCALE)
_BARE = re.compile(rf"\b{_NUMBER}\b")
# The scale repeated back ("confidence (0-100): 85") is not the verdict.
_ASKED_SCALE = re.compile(r"\b0\s*(?:-|\u2013|to)\s*(?:100|10|1)\b")


def judge_confidence(reply: str) -> float | None:
    """The judge's confidence (0..1) read out of a reply that may ramble; None if there is none.

    A labelled number ("confidence: 90") comes first, then one with a scale, then the last
    number: judges that explain themselves tend to conclude with it.
    """
    lowered = _ASKED_SCALE.sub(" ", reply.lower())
    labelled = _LABELLED.search(lowered)
    candidates = [labelled.groups(default="")] if labelled else []
    candidates += _SCALED.findall(lowered)
    candidates += [(number, "") for number in reversed(_BARE.findall(lowered))]
    for number, scale in candidates:
        confidence = _as_fraction(float(number), number, scale)
        if confidence is not None:
            return confidence
    return None


def _as_fraction(value: float, written: str, scale: str) -> float | None:
    """A number read on the scale it states; without one, on the 0 to 100 the judge was asked
    for, except that a decimal up to 1 ("0.9", "0.85") is taken as the fraction it plainly is."""
    if scale:
        top = 100.0 if scale == "%" else float(re.sub(r"\D", "", scale))
    elif "." in written and value <= 1:
        top = 1.0
    else:
        top = 100.0
    return value / top if value <= top else None


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
