"""Scorer ``quality-prior``: a cascade escalates when the cheap answer probably won't do.

The ``quality-cost`` gate decides before any call; in a ``cascade`` the cheap expert has already
answered, so two kinds of evidence meet here: the trained predictor's prior for the prompt
(``P(cheap answer as good as the strong one)``, below its calibrated threshold the prompt is one
the cheap expert usually gets wrong) and, with ``answer_check``, what the answer itself shows
(see :func:`moe_core.builtins.scorers.answer_check`). Either is enough to escalate: the doubt is
the larger of the two, the prior's mapped so that its threshold lands on the cascade's default
0.5 (at the threshold 0.5, one point of probability below it one point above 0.5).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from moe_core import ExpertResult, Options, Run, Scorer, Verdict
from moe_core.builtins.scorers import answer_check
from moe_domain_llms.embeddings import DEFAULT_ENCODER
from moe_domain_llms.quality_gate import QualityPrior


class QualityPriorOptions(Options):
    artefact: str | None = Field(None, description="Trained artefact; default: the bundled one")
    encoder: str = Field(DEFAULT_ENCODER, description="Sentence-embedding model folder")
    target_strong_share: float | None = Field(
        None, ge=0, le=1, description="Share of prompts to escalate on the prior (default 0.5)"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Escalate below this P(cheap as good) instead"
    )
    answer_check: bool = Field(True, description="Also escalate on visible signs of a bad answer")

    @model_validator(mode="after")
    def _one_knob(self) -> QualityPriorOptions:
        if self.threshold is not None and self.target_strong_share is not None:
            raise ValueError("give target_strong_share or threshold, not both")
        return self


class QualityPriorScorer(Scorer):
    """The prompt's learned prior, with the answer's visible signs."""

    options: QualityPriorOptions

    def __init__(self, name: str, options: QualityPriorOptions) -> None:
        super().__init__(name, options)
        self.prior = QualityPrior(
            options.artefact,
            options.encoder,
            threshold=options.threshold,
            target_strong_share=options.target_strong_share,
            where="combiner.scorer_options",
        )
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
