"""The ``single`` combiner: one expert answers; on failure the next in the chain does."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import Field

from moe_core.errors import MoEError
from moe_core.models import ChatRequest, Delta, ExpertResult
from moe_core.options import StreamFailover
from moe_core.parts import Combiner
from moe_core.plugins import CombinerOptions, Register, hookimpl
from moe_core.run import Run, Sent


class SingleCombinerOptions(CombinerOptions):
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Last-resort experts tried after the decision's and the experts' own.",
    )
    stream_failover: StreamFailover = "error"


class SingleCombiner(Combiner):
    """The first chosen expert answers; each fallback is tried in order when one fails.

    A streamed answer falls back transparently until the first of its text has been sent. After that
    the client has part of one expert's answer: by default the stream ends with the error; with
    ``stream_failover: continue`` the next expert is shown the partial text and asked to carry
    on from it, so the client gets one whole answer. Never once a tool call has been streamed
    (continuations turn tool calls into prose), nor where the request asks for JSON or several
    choices, which a continuation cannot honour.
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
        sent = Sent()  # what the client already has
        request: ChatRequest | None = None  # the caller's, until an answer must be continued
        for position, expert in enumerate(chain):
            deltas = run.stream(expert, request)
            try:
                async for delta in deltas:
                    sent.add(delta)
                    yield delta
                return
            except MoEError as exc:
                last = position == len(chain) - 1
                if not sent:  # nothing reached the client: the next expert answers afresh
                    if last:
                        raise _exhausted(run, exc) from None
                    run.record_fallback(expert, exc)
                    continue
                if last or self.options.stream_failover != "continue":
                    raise
                request = run.continuing(sent)
                if request is None:
                    raise
                run.hand_over(expert, exc, chain[position + 1], sent)
            finally:
                await deltas.aclose()


def _exhausted(run: Run, last: MoEError) -> MoEError:
    """The last failure, its message extended with what the earlier experts said."""
    if run.fallbacks:
        tried = "; ".join(f"{record.expert}: {record.error}" for record in run.fallbacks)
        last.message = f"{last.message} (fallbacks tried before it: {tried})"
    return last


@hookimpl
def moe_register_combiners(register: Register) -> None:
    register("single", SingleCombiner, options=SingleCombinerOptions)
