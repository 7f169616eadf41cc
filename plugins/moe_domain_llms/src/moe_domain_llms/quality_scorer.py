"""Scorer ``quality-prior``: a cascade escalates when the cheap answer probably won't do.

The ``quality-cost`` gate decides before any call; in a ``cascade`` the cheap expert has already
answered, so two kinds of evidence meet here: the trained predictor's prior for the prompt
(``P(cheap answer as good as the strong one)``, below its calibrated threshold the prompt is one
the cheap expert usually gets wrong) and, with ``answer_check``, what the answer itself shows
(see :func:`moe_core.answers.answer_check`). Either is enough to escalate: the doubt is
the larger of the two, the prior's mapped so that its threshold lands on the cascade's default
0.5 (at the threshold 0.5, one point of probability below it one point above 0.5).
"""

from __future__ import annotations

from pydantic import Field

from moe_core import ExpertResult, Run, Scorer, Verdict
from moe_core.answers import answer_check
from moe_domain_llms.quality_gate import PriorOptions, QualityPrior


class QualityPriorOptions(PriorOptions):
    answer_check: bool = Field(True, description="Also escalate on visible signs of a bad answer")


class QualityPriorScorer(Scorer):
    """The prompt's learned prior, with the answer's visible signs."""

    options: QualityPriorOptions

    def __init__(self, name: str, options: QualityPriorOptions) -> None:
        super().__init__(name, options)
        self.prior = QualityPrior(options, where="combiner.scorer_options")
        self.prior.predictor  # noqa: B018 - a bad artefact stops the gateway at startup

    async def start(self) -> None:
        await self.prior.start()

    async def close(self) -> None:
        await self.prior.close()

    async def score(self, run: Run, answer: ExpertResult) -> Verdict:
        p = await self.prior.probability(run.request.last_user_text())
        prior_doubt = min(1.0, max(0.0, 0.5 + self.prior.threshold - p))
        reason = f"P(cheap answer as good) = {p:.2f} against {self.prior.describe_threshold()}"
        if not self.options.answer_check:
            return Verdict(prior_doubt, reason)
        visible = answer_check(answer)
        return Verdict(max(prior_doubt, visible), f"{reason}; answer-check {visible:.2f}")
