"""The ``fixed`` gate: every request goes to one configured expert."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from moe_core.models import ChatRequest, ExpertCard, RoutingDecision
from moe_core.parts import Gate, Tracker, require_known_experts
from moe_core.plugins import Options, Register, hookimpl


class FixedGateOptions(Options):
    expert: str | None = Field(None, description="The expert to use; default: the first one.")
    fallbacks: list[str] = Field(default_factory=list, description="Tried in order on failure.")


class FixedGate(Gate):
    """Always the configured default expert: the simplest policy, and a baseline for others."""

    options: FixedGateOptions

    def __init__(self, name: str, options: FixedGateOptions) -> None:
        super().__init__(name, options)
        # The fallbacks and rationale for each expert it has sent requests to: the same on
        # every request, so worked out once.
        self._described: dict[str, tuple[tuple[str, ...], str]] = {}

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
        fallbacks, rationale = self._described.get(expert) or self._describe(expert)
        # A new object each time, with its own lists: a decision is the request's.
        return RoutingDecision(
            experts=[expert],
            fallbacks=list(fallbacks),
            gate=self.name,
            confidence=1.0,
            rationale=rationale,
        )

    def _describe(self, expert: str) -> tuple[tuple[str, ...], str]:
        described = (
            tuple(name for name in self.options.fallbacks if name != expert),
            f"the fixed gate always sends requests to {expert!r}",
        )
        self._described[expert] = described
        return described


@hookimpl
def moe_register_gates(register: Register) -> None:
    register("fixed", FixedGate, options=FixedGateOptions)
