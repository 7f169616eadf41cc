"""The ``fixed`` gate: every request goes to one configured expert."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from moe_core.models import ChatRequest, ExpertCard, RoutingDecision, trusted
from moe_core.parts import Gate, Tracker, require_known_experts
from moe_core.plugins import Options


class FixedGateOptions(Options):
    expert: str | None = Field(None, description="The expert to use; default: the first one.")
    fallbacks: list[str] = Field(default_factory=list, description="Tried in order on failure.")


class FixedGate(Gate):
    """Always the configured default expert: the simplest policy, and a baseline for others."""

    options: FixedGateOptions

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        named = {f"fallbacks[{i}]": name for i, name in enumerate(self.options.fallbacks)}
        require_known_experts(experts, "gate", {"expert": self.options.expert, **named})

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        expert = self.options.expert or next(iter(experts))
        # Every request gets the same decision: built from known-good values, not validated.
        return trusted(
            RoutingDecision,
            experts=[expert],
            strategy=None,
            fallbacks=[name for name in self.options.fallbacks if name != expert],
            gate=self.name,
            confidence=1.0,
            rationale=f"the fixed gate always sends requests to {expert!r}",
            runner_up=None,
            scores={},
            evidence=[],
            judge=None,
            overrides={},
        )
