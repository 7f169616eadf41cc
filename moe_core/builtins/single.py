"""The ``single`` combiner: one expert answers; on failure the next in the chain does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from moe_core.errors import MoEError
from moe_core.models import ChatMessage, ChatRequest, Delta, ExpertResult
from moe_core.parts import Combiner
from moe_core.plugins import CombinerOptions, Register, hookimpl
from moe_core.run import CHARS_PER_TOKEN, Run


class SingleCombinerOptions(CombinerOptions):
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Last-resort experts tried after the decision's and the experts' own.",
    )
    stream_failover: Literal["error", "continue"] = Field(
        "error",
        description=(
            "When a stream dies after text reached the client: 'error' ends it with an error "
            "event; 'continue' asks the next expert to carry on from the text already sent "
            "(never after tool calls, nor for JSON output or several choices)."
        ),
    )


CONTINUE_NOTE = (
    "Your previous answer was cut off after the text above. Continue it from exactly where it "
    "stopped, mid-word or mid-sentence if need be: do not repeat any of it, and do not mention "
    "this note."
)
"""The turn that asks a fallback to carry on a partial answer (``stream_failover: continue``).

An assistant turn holding the partial text followed by this user turn is valid for every chat
API and every chat template, where a trailing assistant turn (a "prefill") is honoured only by
some."""


class SingleCombiner(Combiner):
    """The first chosen expert answers; each fallback is tried in order when one fails.

    A streamed answer falls back transparently until its first chunk has been sent. After that
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
        sent: list[str] = []  # the text the client already has
        tool_calls = False
        for position, expert in enumerate(chain):
            request = _continuation(run.request, "".join(sent)) if sent else None
            deltas = run.stream(expert, request)
            try:
                async for delta in deltas:
                    if delta.content:
                        sent.append(delta.content)
                    tool_calls = tool_calls or bool(delta.tool_calls)
                    yield delta
                return
            except MoEError as exc:
                last = position == len(chain) - 1
                if not sent and not tool_calls:  # nothing reached the client: fall back
                    if last:
                        raise _exhausted(run, exc) from None
                    run.record_fallback(expert, exc)
                    continue
                if last or not self._continues(run, tool_calls):
                    raise
                run.record_fallback(expert, exc)
                run.note(
                    f"{expert} failed after streaming {len(''.join(sent))} characters; "
                    f"{chain[position + 1]} continues the answer"
                )
            finally:
                await deltas.aclose()

    def _continues(self, run: Run, tool_calls: bool) -> bool:
        """Whether a stream cut mid-answer may be carried on by the next expert."""
        if self.options.stream_failover != "continue" or tool_calls:
            return False
        request = run.request
        json_output = (request.upstream_extras().get("response_format") or {}).get("type")
        return json_output in (None, "text") and (request.n or 1) == 1


def _continuation(request: ChatRequest, partial: str) -> ChatRequest:
    """The request asking for the rest of ``partial``, within what is left of its token limit."""
    messages = [
        *request.messages,
        ChatMessage(role="assistant", content=partial),
        ChatMessage(role="user", content=CONTINUE_NOTE),
    ]
    update: dict[str, object] = {"messages": messages}
    if (limit := request.output_limit) is not None:
        left = max(1, limit - round(len(partial) / CHARS_PER_TOKEN))
        update["max_tokens" if request.max_tokens else "max_completion_tokens"] = left
    return request.model_copy(update=update)


def _exhausted(run: Run, last: MoEError) -> MoEError:
    """The last failure, its message extended with what the earlier experts said."""
    if run.fallbacks:
        tried = "; ".join(f"{record.expert}: {record.error}" for record in run.fallbacks)
        last.message = f"{last.message} (fallbacks tried before it: {tried})"
    return last


@hookimpl
def moe_register_combiners(register: Register) -> None:
    register("single", SingleCombiner, options=SingleCombinerOptions)
