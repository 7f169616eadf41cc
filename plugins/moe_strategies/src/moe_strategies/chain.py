"""The ``chain`` combiner: experts in sequence, each stage's output feeding the next.

The ``reasoning-execution`` preset is the classic pairing of a reasoning model and an execution
model: the reasoner thinks, its thinking streams to the client inside ``<think>…</think>`` (and
as ``reasoning_content`` deltas for clients that read that field), then the executor's answer
streams, all in one response. If the reasoner fails, before or during its thinking, the executor
answers alone and ``moe_metadata.fallbacks`` says so: a chain never fails because an
intermediate stage did. Only the final stage's failure fails the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Literal

from pydantic import Field, model_validator

from moe_core.errors import MoEError
from moe_core.models import ChatMessage, ChatRequest, Delta, ExpertCard, ExpertResult
from moe_core.parts import Combiner, require_known_experts
from moe_core.plugins import CombinerOptions, Options
from moe_core.run import Run

REASONER_PROMPT = (
    "Think through the user's request step by step: what is asked, what is known, how to get "
    "there. Write your reasoning only; another model will write the final answer from it."
)
EXECUTOR_PROMPT = (
    "A reasoning model has already thought about this request; its thinking is below. Use it "
    "where it is right, fix it where it is wrong, and write the final answer for the user "
    "without repeating the reasoning.\n\n<think>\n{previous}\n</think>"
)
NEXT_STAGE_PROMPT = "{prompt}\n\nThe previous stage ({expert}) wrote:\n{previous}"


class ChainStage(Options):
    expert: str
    prompt: str | None = Field(None, description="Role prompt; {previous} is the last output")
    show: Literal["hidden", "think"] = Field(
        "hidden", description="think: stream this stage's output as <think> reasoning"
    )


class ChainOptions(CombinerOptions):
    stages: list[ChainStage] = Field(default_factory=list)
    preset: Literal["reasoning-execution"] | None = None
    reasoner: str | None = Field(None, description="reasoning-execution: the thinking expert")
    executor: str | None = Field(None, description="reasoning-execution: the answering expert")
    think_tags: bool = Field(True, description="Put shown thinking in content, in <think> tags")

    @model_validator(mode="after")
    def _preset_or_stages(self) -> ChainOptions:
        if self.preset == "reasoning-execution":
            if not (self.reasoner and self.executor) or self.stages:
                raise ValueError("reasoning-execution takes reasoner and executor, not stages")
            self.stages = [
                ChainStage(expert=self.reasoner, prompt=REASONER_PROMPT, show="think"),
                ChainStage(expert=self.executor, prompt=EXECUTOR_PROMPT),
            ]
        return self


class ChainCombiner(Combiner):
    """Experts in sequence; with no stages configured, the decision's experts in order."""

    options: ChainOptions

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        named = {f"stages[{i}].expert": s.expert for i, s in enumerate(self.options.stages)}
        require_known_experts(experts, "combiner", named)

    def _stages(self, run: Run) -> list[ChainStage]:
        return self.options.stages or [
            ChainStage(expert=name, prompt="Improve on the previous answer." if i else None)
            for i, name in enumerate(run.decision.experts)
        ]

    @staticmethod
    def _request(run: Run, stage: ChainStage, previous: tuple[str, str] | None) -> ChatRequest:
        if stage.prompt is None and previous is None:
            return run.request
        expert, output = previous or ("", "")
        prompt = stage.prompt or "Build on the previous stage."
        if previous is None and "{previous}" in prompt:
            return run.request  # the earlier stages failed: this one answers on its own
        if "{previous}" in prompt:
            text = prompt.format(previous=output)
        elif previous is not None:
            text = NEXT_STAGE_PROMPT.format(prompt=prompt, expert=expert, previous=output)
        else:
            text = prompt
        system = ChatMessage(role="system", content=text)
        return run.request.model_copy(update={"messages": [system, *run.request.messages]})

    async def complete(self, run: Run) -> ExpertResult:
        stages = self._stages(run)
        previous: tuple[str, str] | None = None
        thinking: list[str] = []
        for position, stage in enumerate(stages):
            final = position == len(stages) - 1
            try:
                result = await run.call(stage.expert, self._request(run, stage, previous))
            except MoEError as exc:
                if final:
                    raise
                run.record_fallback(stage.expert, exc)
                continue
            if final:
                reasoning = "\n".join(thinking) or None
                return result.model_copy(
                    update={"reasoning_content": reasoning, "usage": run.usage}
                )
            if stage.show == "think":
                thinking.append(result.content)
            previous = (stage.expert, result.content)
        raise AssertionError("unreachable: the last stage returns or raises")

    async def stream(self, run: Run) -> AsyncIterator[Delta]:
        stages = self._stages(run)
        previous: tuple[str, str] | None = None
        for stage in stages[:-1]:
            output: list[str] = []
            shown = stage.show == "think"
            opened = False
            try:
                async for delta in run.stream(stage.expert, self._request(run, stage, previous)):
                    if not delta.content:
                        continue
                    output.append(delta.content)
                    if shown:
                        prefix = "<think>\n" if self.options.think_tags and not opened else ""
                        opened = True
                        yield Delta(
                            content=prefix + delta.content if self.options.think_tags else None,
                            reasoning_content=delta.content,
                        )
            except MoEError as exc:
                run.record_fallback(stage.expert, exc)
                output = []  # a half-finished thought would mislead the next stage
            if opened and self.options.think_tags:
                yield Delta(content="\n</think>\n\n")
            if output:
                previous = (stage.expert, "".join(output))
        async for delta in run.stream(stages[-1].expert, self._request(run, stages[-1], previous)):
            yield delta
