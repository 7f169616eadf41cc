"""``gate-alias``: an expert name that means "let the configured gate choose" (``moe-auto``).

Chat clients of the seed pick ``moe-auto`` from a model list next to ``moe-expert-byt5`` and
``moe-expert-longformer``. The gateway's own name for that is ``auto``; this expert kind makes
another name behave the same: it sends the request through the pipeline again with
``model: auto``, so the gate routes it, the chosen expert's fallbacks apply, and trackers see
that inner request as well. The answer's ``model`` field names the expert that really answered.

The expert needs the pipeline it belongs to, which parts never get at construction; the
``gate-alias`` frontend (no routes of its own) hands it over when the server is assembled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from moe_core import (
    MOE_KEY,
    ChatRequest,
    Delta,
    Expert,
    ExpertCard,
    ExpertResult,
    ExpertUnavailable,
    Frontend,
    GateError,
    MoE,
)


class GateAlias(Expert):
    """Another name for ``model: auto``: the configured gate chooses the expert."""

    def __init__(self, name: str, options: object) -> None:
        super().__init__(name, options)  # type: ignore[arg-type]
        self._moe: MoE | None = None

    def bind(self, moe: MoE) -> None:
        self._moe = moe

    def card(self) -> ExpertCard:
        return ExpertCard(
            provider="moe",
            description="Routes through the configured gate, like model 'auto'",
        )

    async def _routed(self, request: ChatRequest) -> tuple[MoE, ChatRequest]:
        """The pipeline and the request as ``model: auto``, once the gate is known not to
        route it back to an alias (which would recurse forever)."""
        if self._moe is None:
            raise ExpertUnavailable(
                f"expert {self.name!r} is not connected to a gateway; it is connected when the "
                "server starts with the gate-alias frontend enabled"
            )
        routed = request.model_copy(update={"model": "auto"})
        decision = await self._moe.route(routed)
        aliases = [
            name
            for name in decision.experts
            if isinstance(self._moe.experts[name].expert, GateAlias)
        ]
        if aliases:
            raise GateError(
                f"gate {decision.gate!r} routed a request for {self.name!r} to the gate alias "
                f"{aliases[0]!r}; route its labels to real experts"
            )
        return self._moe, routed

    async def generate(self, request: ChatRequest) -> ExpertResult:
        moe, routed = await self._routed(request)
        response = await moe.complete(routed)
        return response.result.model_copy(update={"model": response.model})

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        moe, routed = await self._routed(request)
        async with await moe.open_stream(routed) as stream:
            async for delta in stream:
                yield delta


class GateAliasBinder(Frontend):
    """Connects every ``gate-alias`` expert to the gateway; adds no routes."""

    def setup(self, app: web.Application) -> None:
        moe = app[MOE_KEY]
        for slot in moe.experts.values():
            if isinstance(slot.expert, GateAlias):
                slot.expert.bind(moe)
