"""The ``mixture-of-agents`` combiner: layers of proposers, then an aggregator.

Each layer's proposers answer at once; from the second layer on they see the previous layer's
answers and are asked to improve on them. The aggregator sees the last layer's answers and
writes the final one, which streams as it is generated. A proposer that fails is left out (and
listed in ``fallbacks``); if a whole layer fails, the next one works from the layer before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from pydantic import Field

from moe_core.errors import MoEError
from moe_core.models import ChatMessage, ChatRequest, Delta, ExpertCard, ExpertResult
from moe_core.parts import Combiner, require_known_experts
from moe_core.plugins import CombinerOptions
from moe_core.run import Run

PROPOSER_PROMPT = (
    "Other assistants answered the user's request as follows. Critically evaluate their "
    "answers, then write your own better answer.\n\n{answers}"
)
AGGREGATOR_PROMPT = (
    "You have been given answers from several assistants to the user's latest request. "
    "Synthesise them into one accurate, complete answer; do not mention the assistants.\n\n"
    "{answers}"
)


class MixtureOptions(CombinerOptions):
    layers: list[list[str]] = Field(min_length=1, description="Proposer experts, layer by layer")
    aggregator: str = Field(description="The expert that writes the final answer")


class MixtureOfAgentsCombiner(Combiner):
    """Proposers in layers, each improving on the last, then an aggregator that synthesises."""

    options: MixtureOptions

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        named = {
            f"layers[{i}][{j}]": name
            for i, layer in enumerate(self.options.layers)
            for j, name in enumerate(layer)
        }
        require_known_experts(experts, "combiner", {**named, "aggregator": self.options.aggregator})

    @staticmethod
    def _with(run: Run, prompt: str, answers: list[tuple[str, str]]) -> ChatRequest:
        if not answers:
            return run.request
        listed = "\n\n".join(f"[{i}] {text.strip()}" for i, (_, text) in enumerate(answers, 1))
        system = ChatMessage(role="system", content=prompt.format(answers=listed))
        return run.request.model_copy(update={"messages": [system, *run.request.messages]})

    async def _proposals(self, run: Run) -> list[tuple[str, str]]:
        answers: list[tuple[str, str]] = []
        for depth, layer in enumerate(self.options.layers):
            request = self._with(run, PROPOSER_PROMPT, answers)
            results = await asyncio.gather(
                *(run.call(name, request) for name in layer), return_exceptions=True
            )
            layer_answers = []
            for name, result in zip(layer, results, strict=True):
                if isinstance(result, MoEError):
                    run.record_fallback(name, result)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    layer_answers.append((name, result.content))
            if layer_answers:
                answers = layer_answers
            else:
                run.note(f"every proposer of layer {depth + 1} failed; kept the layer before")
        if not answers:
            run.note("no proposer answered; the aggregator answered alone")
        return answers

    async def complete(self, run: Run) -> ExpertResult:
        answers = await self._proposals(run)
        request = self._with(run, AGGREGATOR_PROMPT, answers)
        result = await run.call(self.options.aggregator, request)
        return result.model_copy(update={"usage": run.usage})

    async def stream(self, run: Run) -> AsyncIterator[Delta]:
        answers = await self._proposals(run)
        request = self._with(run, AGGREGATOR_PROMPT, answers)
        async for delta in run.stream(self.options.aggregator, request):
            yield delta
