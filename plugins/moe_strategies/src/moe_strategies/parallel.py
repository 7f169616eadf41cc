"""Combiners that call several experts at once: ``first-success`` and ``concat``.

Both take their experts from the routing decision (the chosen experts, then its fallbacks), or
from ``experts`` in their options when set, and report every expert that failed in
``moe_metadata.fallbacks``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from moe_core.errors import MoEError
from moe_core.models import Delta, ExpertResult
from moe_core.options import StreamFailover
from moe_core.parts import ParallelCombiner, ParallelOptions, every_failure
from moe_core.run import Run, Sent


class FirstSuccessOptions(ParallelOptions):
    stream_failover: StreamFailover = "error"


class FirstSuccessCombiner(ParallelCombiner):
    """Races the experts; the first good answer wins and the others are cancelled."""

    options: FirstSuccessOptions

    async def complete(self, run: Run) -> ExpertResult:
        pending = {asyncio.create_task(run.call(name)): name for name in self.experts(run)}
        order = list(pending)
        errors: list[tuple[str, MoEError]] = []
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # Answers that arrive together go to the expert listed first.
                for task in sorted(done, key=order.index):
                    name = pending.pop(task)
                    error = task.exception()
                    if error is None:
                        run.note(f"{name} answered first")
                        return task.result()
                    assert isinstance(error, MoEError)  # Run.call wraps everything else
                    run.record_fallback(name, error)
                    errors.append((name, error))
        finally:
            await _cancel(pending)
        raise every_failure(errors)

    async def stream(self, run: Run) -> AsyncIterator[Delta]:
        """The first expert to produce a chunk streams the answer; the rest are closed."""
        streams = {name: run.stream(name) for name in self.experts(run)}
        pending = {asyncio.create_task(anext(stream)): name for name, stream in streams.items()}
        order = list(pending)
        errors: list[tuple[str, MoEError]] = []
        winner: str | None = None
        first: Delta | None = None
        try:
            while pending and winner is None:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=order.index):
                    name = pending.pop(task)
                    error = task.exception()
                    if error is None and winner is None:
                        winner, first = name, task.result()
                        run.note(f"{name} streamed first")
                    elif isinstance(error, MoEError):
                        run.record_fallback(name, error)
                        errors.append((name, error))
                    elif isinstance(error, StopAsyncIteration) and winner is None:
                        winner, first = name, None
        finally:
            await _cancel(pending)
            for name, stream in streams.items():
                if name != winner:
                    await stream.aclose()
        if winner is None:
            raise every_failure(errors)
        if first is None:  # the winner's answer was empty
            await streams[winner].aclose()
            return
        # With ``stream_failover: continue``, an answer cut after its first text is carried on
        # by the other experts in turn (the losers of the race, which were stopped).
        failed = {name for name, _ in errors}
        reserve = [name for name in self.experts(run) if name != winner and name not in failed]
        sent, expert, deltas = Sent(), winner, streams[winner]
        sent.add(first)
        yield first
        while True:
            try:
                async with contextlib.aclosing(deltas):
                    async for delta in deltas:
                        sent.add(delta)
                        yield delta
                return
            except MoEError as exc:
                continuing = None
                if self.options.stream_failover == "continue" and reserve:
                    continuing = run.continuing(sent) if sent else run.request
                if continuing is None:
                    raise
                run.hand_over(expert, exc, reserve[0], sent)
                expert = reserve.pop(0)
                deltas = run.stream(expert, continuing)


class ConcatCombiner(ParallelCombiner):
    """Asks every expert at once and returns all their answers, each under its name."""

    async def complete(self, run: Run) -> ExpertResult:
        sections = [
            f"**{name}**:\n{answer.content.strip()}" for name, answer in await self.answers(run)
        ]
        return ExpertResult(
            content="\n\n".join(sections),
            finish_reason="stop",
            usage=run.usage,
            model="+".join(run.experts_used),
        )


async def _cancel(tasks: Mapping[asyncio.Task, str]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
