"""Gate ``quality-cost``: the cheap expert answers unless it probably would not do as well.

A :class:`moe_domain_llms.quality.QualityPredictor`, trained from recorded outcomes
(``moe gate train``), estimates for each request ``P(weak answer is as good as the strong
one)``. Below a threshold the request goes to the strong expert; otherwise to the weak one, with
the other as fallback. The threshold is either given, or calibrated from the artefact's held-out
probabilities so that ``target_strong_share`` of traffic like the training prompts goes to the
strong expert: the knob is the cost a deployment accepts, not a probability nobody can reason
about. Every decision carries the probability, the threshold and a one-line rationale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from moe_core import ChatRequest, ConfigError, ExpertCard, Gate, Options, RoutingDecision, Tracker
from moe_core.artefacts import default_output, with_usage
from moe_domain_llms import artefacts
from moe_domain_llms.embeddings import DEFAULT_ENCODER, Encoder
from moe_domain_llms.lm_states import DEFAULT_LAYER, DEFAULT_LM, LMStates
from moe_domain_llms.quality import LM, OPTIONS, PROMPT, STEM, QualityPredictor, split_prompt
from moe_domain_llms.quality_training import KIND, train_from_file

PACKAGED = artefacts.PACKAGED / f"{KIND}.npz"


class PriorOptions(Options):
    """What every part consulting the trained predictor (:class:`QualityPrior`) is given."""

    artefact: str | None = Field(None, description="Trained artefact; default: the bundled one")
    encoder: str = Field(DEFAULT_ENCODER, description="Sentence-embedding model folder")
    lm: str = Field(DEFAULT_LM, description="Language model whose hidden states are read")
    target_strong_share: float | None = Field(
        None, ge=0, le=1, description="Share of requests for the strong expert (default 0.5)"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Use the strong expert below this P(weak as good) instead"
    )

    @model_validator(mode="after")
    def _one_knob(self) -> PriorOptions:
        if self.threshold is not None and self.target_strong_share is not None:
            raise ValueError("give target_strong_share or threshold, not both")
        return self


class QualityGateOptions(PriorOptions):
    weak: str = Field("weak", description="The cheaper expert, answering by default")
    strong: str = Field("strong", description="The stronger expert, for requests that need it")
    data: str | None = Field(
        None, description="Outcomes to train on (CSV/JSONL: prompt, weak_ok, strong_ok)"
    )
    embeddings: bool = Field(True, description="Train with sentence embeddings as features")
    lm_states: bool = Field(
        True, description="Train with the language model's hidden states as features"
    )
    margin: float = Field(0.0, ge=0, description="Graded scores: weak as good within this")

    @model_validator(mode="after")
    def _two_experts(self) -> QualityGateOptions:
        if self.weak == self.strong:
            raise ValueError("weak and strong must be different experts")
        return self


class QualityPrior:
    """A trained predictor and its threshold, loaded once: what the ``quality-cost`` gate and
    the ``quality-prior`` scorer both consult.

    :param where: the config key path of the owning part, for error messages.
    """

    def __init__(self, options: PriorOptions, *, where: str) -> None:
        self.artefact_path = Path(options.artefact) if options.artefact else PACKAGED
        self.encoder = Encoder(options.encoder, where=f"{where}.encoder")
        self.lm_name = options.lm
        self.lm: LMStates | None = None  # made when the artefact reads one
        self.where = where
        self.fixed_threshold = options.threshold
        share = options.target_strong_share
        self.target_strong_share = 0.5 if share is None else share
        self._predictor: QualityPredictor | None = None
        self.threshold = 0.0

    @property
    def predictor(self) -> QualityPredictor:
        """The trained predictor, read on first use (at startup when serving, never when
        training, which must work whatever state the old file is in)."""
        if self._predictor is None:
            where = f"{self.where}.artefact"
            model = artefacts.load(self.artefact_path, KIND, where=where)
            trained_with = model.meta.get("encoder")
            if trained_with is not None and trained_with != self.encoder.identity:
                raise ConfigError(
                    f"{where}: {self.artefact_path} was trained on embeddings from "
                    f"{trained_with}, but {self.where}.encoder is {self.encoder.identity}; "
                    "retrain with `moe gate train`"
                )
            lm_trained = model.meta.get("lm")
            if lm_trained is not None and lm_trained != self.lm_name:
                raise ConfigError(
                    f"{where}: {self.artefact_path} was trained on states of {lm_trained}, "
                    f"but {self.where}.lm is {self.lm_name}; retrain with `moe gate train`"
                )
            if lm_trained is not None:
                layer = int(model.meta.get("lm_layer") or DEFAULT_LAYER)
                self.lm = LMStates(self.lm_name, layer, where=f"{self.where}.lm")
            try:
                predictor = QualityPredictor.from_arrays(
                    model.arrays, self.encoder if trained_with else None, model.meta, self.lm
                )
            except (KeyError, ValueError) as exc:
                raise ConfigError(
                    f"{where}: {self.artefact_path} is not a predictor this version reads "
                    f"({exc}); retrain it with `moe gate train`"
                ) from None
            if self.fixed_threshold is not None:
                self.threshold = self.fixed_threshold
            else:
                self.threshold = predictor.threshold_for(self.target_strong_share)
            self._predictor = predictor
        return self._predictor

    def describe_threshold(self) -> str:
        if self.fixed_threshold is not None:
            return f"threshold {self.threshold:.3f}"
        return (
            f"threshold {self.threshold:.3f}, calibrated to a "
            f"{self.target_strong_share:.0%} strong share"
        )

    async def start(self) -> None:
        if self.predictor.uses_embeddings:
            await asyncio.to_thread(self.encoder.load)
        if self.lm is not None:
            await asyncio.to_thread(self.lm.load)

    async def close(self) -> None:
        await self.encoder.close()
        if self.lm is not None:
            await self.lm.close()

    async def probability(self, text: str) -> float:
        """P(weak answer is as good) for one request's text. The blocks' models run at once:
        the stem and options embeddings share one encoder pass, the LM its own thread."""
        predictor = self.predictor
        stem, options = split_prompt(text)
        pending = {}
        for block in predictor.blocks:
            if block == PROMPT:
                pending[block] = self.encoder.encode_one(text)
            elif block == STEM:
                pending[block] = self.encoder.encode_one(stem)
            elif block == OPTIONS and options:
                pending[block] = self.encoder.encode_one(options)
            elif block == LM and self.lm is not None:
                pending[block] = self.lm.encode_one(text)
        found = dict(zip(pending, await asyncio.gather(*pending.values()), strict=True))
        if OPTIONS in predictor.blocks and OPTIONS not in found:
            found[OPTIONS] = np.zeros(384, np.float32)  # no options listed
        return float(predictor.predict_proba(text, found))


class QualityCostGate(Gate):
    """Routes to the weak expert unless the predictor says it is probably not as good."""

    options: QualityGateOptions

    def __init__(self, name: str, options: QualityGateOptions) -> None:
        super().__init__(name, options)
        self.prior = QualityPrior(options, where="gate")
        self.encoder = self.prior.encoder
        self.artefact_path = self.prior.artefact_path

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        missing = [
            f"{role} -> {name}"
            for role, name in (("weak", self.options.weak), ("strong", self.options.strong))
            if name not in experts
        ]
        if missing:
            raise ConfigError(
                f"gate: {', '.join(missing)} not configured; configured experts: "
                f"{', '.join(experts)}"
            )
        self.prior.predictor  # noqa: B018 - a bad artefact stops the gateway at startup

    async def start(self) -> None:
        await self.prior.start()

    async def close(self) -> None:
        await self.prior.close()

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        p = await self.prior.probability(request.last_user_text())
        threshold = self.prior.threshold
        weak, strong = self.options.weak, self.options.strong
        to_strong = p < threshold
        chosen, other = (strong, weak) if to_strong else (weak, strong)
        share = self.options.target_strong_share
        rationale = (
            f"P({weak} as good as {strong}) = {p:.3f} "
            f"{'<' if to_strong else '>='} {self.prior.describe_threshold()}: {chosen}"
        )
        return RoutingDecision(
            experts=[chosen],
            fallbacks=[other],
            gate=self.name,
            confidence=float(np.clip(1 - p if to_strong else p, 0, 1)),
            runner_up=other,
            scores={weak: round(p, 4), strong: round(1 - p, 4)},
            rationale=rationale,
            evidence=[
                {
                    "p_weak_as_good": round(p, 4),
                    "threshold": round(threshold, 4),
                    "target_strong_share": share if self.options.threshold is None else None,
                    "to_strong": to_strong,
                }
            ],
        )

    def train(self, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
        if self.options.data is None:
            raise ConfigError(
                "gate.data: give the recorded outcomes to train on (CSV/JSONL with prompt, "
                "weak_ok, strong_ok or weak_score, strong_score), e.g. --data outcomes.csv"
            )
        share = self.options.target_strong_share
        result = train_from_file(
            Path(self.options.data),
            output or default_output(KIND),
            encoder=self.encoder if self.options.embeddings else None,
            lm=LMStates(self.options.lm, where="gate.lm") if self.options.lm_states else None,
            target_strong_share=0.5 if share is None else share,
            margin=self.options.margin,
            progress=progress,
        )
        return with_usage(result, self.artefact_path)
