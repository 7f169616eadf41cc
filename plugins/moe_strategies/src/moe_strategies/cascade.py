"""The ``cascade`` combiner: a cheap expert first, a stronger one only when needed.

Experts are tried from cheapest to strongest. After each answer but the last, a scorer (any
scorer kind: ``answer-check``, ``judge``, or one a plugin registers) says how much it doubts the
answer (0: keep it, 1: surely wrong); at or above ``threshold`` the next expert is asked, and
``moe_metadata.fallbacks`` records why the earlier answer was set aside. Naming a ``judge``
expert selects the ``judge`` scorer; with another ``scorer`` it is a configuration error.

An answer is only returned once accepted, so the cheap stage is not streamed; when the cascade
escalates, the last expert's answer streams as it is generated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from moe_core.config import InstanceConfig
from moe_core.errors import MoEError
from moe_core.models import Delta, ExpertCard, ExpertResult
from moe_core.parts import Combiner, Scorer, require_known_experts
from moe_core.plugins import CombinerOptions
from moe_core.run import Run

if TYPE_CHECKING:
    from moe_core.orchestrator import MoE


class CascadeOptions(CombinerOptions):
    experts: list[str] = Field(
        default_factory=list, description="Cheapest first; default: the decision's, then fallbacks"
    )
    scorer: str = Field(
        "answer-check", description="A scorer kind; default: answer-check, or judge with judge"
    )
    scorer_options: dict[str, Any] = Field(
        default_factory=dict, description="The scorer kind's options"
    )
    judge: str | None = Field(
        None,
        description="The expert that judges each answer: implies scorer: judge (same as "
        "scorer_options.expert with it)",
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Escalate at or above this doubt")

    @model_validator(mode="after")
    def _judge_named(self) -> CascadeOptions:
        if self.judge is not None and self.scorer != "judge":
            if "scorer" in self.model_fields_set:
                raise ValueError(
                    f"judge: {self.judge} is the expert of scorer: judge, but scorer is "
                    f"{self.scorer!r}: write scorer: judge to have {self.judge} judge the "
                    "answers, or drop judge"
                )
            # Naming a judge says which scorer is wanted; keeping the default scorer would
            # leave the judge uncalled without a word.
            self.scorer = "judge"
        if self.scorer == "judge" and not (self.judge or self.scorer_options.get("expert")):
            raise ValueError("scorer: judge needs judge: <expert name>")
        return self


class CascadeCombiner(Combiner):
    """Cheapest expert first; escalate while the scorer doubts the answer."""

    options: CascadeOptions
    scorer: Scorer | None = None

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        named = {f"experts[{i}]": name for i, name in enumerate(self.options.experts)}
        require_known_experts(experts, "combiner", {**named, "judge": self.options.judge})

    def attach(self, moe: MoE) -> None:
        from moe_core.orchestrator import build_part

        options = dict(self.options.scorer_options)
        if self.options.scorer == "judge" and self.options.judge:
            options.setdefault("expert", self.options.judge)
        spec = InstanceConfig(kind=self.options.scorer, **options)
        self.scorer = build_part(
            moe.plugins, moe.config, "scorer", spec, spec.kind, "combiner.scorer_options"
        )
        self.scorer.check_experts(moe.experts.cards())

    async def start(self) -> None:
        if self.scorer is not None:
            await self.scorer.start()

    async def close(self) -> None:
        if self.scorer is not None:
            await self.scorer.close()

    def _experts(self, run: Run) -> list[str]:
        if self.options.experts:
            return list(self.options.experts)
        return list(dict.fromkeys([*run.decision.experts, *run.decision.fallbacks]))

    async def _accepted(self, run: Run, experts: list[str]) -> ExpertResult | None:
        """The first answer the scorer accepts among all but the last expert, if any."""
        if self.scorer is None:
            raise MoEError(f"combiner {self.name!r} was never attached to a gateway")
        for name in experts[:-1]:
            try:
                answer = await run.call(name)
            except MoEError as exc:
                run.record_fallback(name, exc)
                continue
            doubt, why = await self.scorer.score(run, answer)
            if doubt < self.options.threshold:
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
