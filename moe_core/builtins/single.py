"""The ``single`` combiner: one expert answers; on failure the next in the chain does."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import Field

from moe_core.errors import MoEError
from moe_core.models import Delta, ExpertResult
from moe_core.parts import Combiner
from moe_core.plugins import CombinerOptions, Register, hookimpl
from moe_core.run import Run


class SingleCombinerOptions(CombinerOptions):
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Last-resort experts tried after the decision's and the experts' own.",
    )


class SingleCombiner(Combiner):
    """The first chosen expert answers; each fallback is tried in order when one fails.

    A streamed answer can fall back only until its first chunk has been sent: after that the
    client has part of one expert's answer, and splicing in another's would corrupt it.
    """

    options: SingleCombinerOptions

    def _chain(self, run: Run) -> list[str]:
        chain = run.candidates()
        return chain + [name for name in self.options.fallbacks if name not in chain]

    async def complete(self, run: Run) -> ExpertResult:
        # The chain starts with the first chosen expert, and is only worked out when that one
        # fails: most requests never need it.
        expert = run.decision.experts[0]
        try:
            return await run.call(expert)
        except MoEError as exc:
            failure = exc
        for following in self._chain(run)[1:]:
            run.record_fallback(expert, failure)
            expert = following
            try:
                return await run.call(expert)
            except MoEError as exc:
                failure = exc
        raise _exhausted(run, failure)

    async def stream(self, run: Run) -> AsyncIterator[Delta]:
        chain = self._chain(run)
        for position, expert in enumerate(chain):
            deltas = run.stream(expert)
            try:
                first = await anext(deltas)
            except StopAsyncIteration:
                return
            except MoEError as exc:
                await deltas.aclose()
                if position == len(chain) - 1:
                    raise _exhausted(run, exc) from None
                run.record_fallback(expert, exc)
                continue
            try:
                yield first
                async for delta in deltas:
                    yield delta
            finally:
                await deltas.aclose()
            return


def _exhausted(run: Run, last: MoEError) -> MoEError:
    """The last failure, its message extended with what the earlier experts said."""
    if run.fallbacks:
        tried = "; ".join(f"{record.expert}: {record.error}" for record in run.fallbacks)
        last.message = f"{last.message} (fallbacks tried before it: {tried})"
    return last


@hookimpl
def moe_register_combiners(register: Register) -> None:
    register("single", SingleCombiner, options=SingleCombinerOptions)
