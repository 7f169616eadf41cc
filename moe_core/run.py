"""One request's execution, as combiners see it.

A combiner only decides *which* expert to call *when*; :class:`Run` does the rest for every call:
checks the expert is ready, applies the gate's parameter overrides, enforces the expert's timeout,
turns unexpected exceptions into clear errors, measures latency and cost, and reports each call
to the trackers. That is why every combiner gets the same metadata and tracking for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from moe_core import capabilities
from moe_core.errors import BudgetExceeded, CallCancelled, ExpertFailed, ExpertTimeout, MoEError
from moe_core.events import Event, ExpertCalled, elapsed_ms
from moe_core.models import (
    ChatMessage,
    ChatRequest,
    Delta,
    ExpertCard,
    ExpertResult,
    FallbackRecord,
    RoutingDecision,
    Usage,
)
from moe_core.pool import ExpertPool, ExpertSlot

if TYPE_CHECKING:
    from moe_core.parts import Preparer

log = structlog.get_logger(__name__)

Emit = Callable[[Event], Awaitable[None]]
CHARS_PER_TOKEN = 4.0
"""A prompt's length in tokens, estimated from its characters where no tokenizer is at hand."""
DEFAULT_OUTPUT_TOKENS = 1024
"""What the budget check before a call assumes when neither caller nor card limits the answer."""


CONTINUE_NOTE = (
    "Your previous answer was cut off after the text above. Continue it from exactly where it "
    "stopped, mid-word or mid-sentence if need be: do not repeat any of it, and do not mention "
    "this note."
)
"""The turn that asks an expert to carry on a partial answer (``stream_failover: continue``).

An assistant turn holding the partial text followed by this user turn is valid for every chat
API and every chat template, where a trailing assistant turn (a "prefill") is honoured only by
some."""


class Sent:
    """What of a streamed answer has reached the client: its text, and whether it began a
    tool call. False while nothing has (a role alone, or reasoning, is no part of the answer)."""

    __slots__ = ("parts", "tool_calls")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tool_calls = False

    def add(self, delta: Delta) -> None:
        if delta.content:
            self.parts.append(delta.content)
        if delta.tool_calls:
            self.tool_calls = True

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def __bool__(self) -> bool:
        return bool(self.parts) or self.tool_calls


@runtime_checkable
class CallGuard(Protocol):
    """A tracker that may refuse a call before it starts: an open circuit breaker, a rate limit.

    ``admit`` raises a :class:`MoEError` (``ExpertUnavailable``, ``RateLimited``) to refuse; the
    combiner then treats the expert as failed and walks its fallback chain. A refused call never
    reaches the expert, so no :class:`ExpertCalled` event is emitted for it.

    ``admits_last`` is true for a guard that holds something once it admits a call (a breaker's
    single probe): such guards are asked after all others, so that no later guard refuses a
    call they admitted.
    """

    admits_last: bool

    async def admit(self, expert: str, provider: str) -> None: ...


@runtime_checkable
class CallCache(Protocol):
    """A tracker that may answer a call from a remembered answer (a response cache).

    ``lookup`` runs before the guards, so a hit spends nothing of a rate limit and reaches no
    breaker; a hit is reported as an :class:`ExpertCalled` with ``cached`` true and no usage
    (nothing was spent). ``remember`` gets every successful answer, streamed ones re-assembled
    (not those with tool calls); the cache decides what is worth keeping.
    """

    async def lookup(self, run: Run, expert: str, request: ChatRequest) -> ExpertResult | None: ...

    async def remember(
        self, run: Run, expert: str, request: ChatRequest, result: ExpertResult
    ) -> None: ...


class Run:
    """The request, the decision, and the guarded way to call experts."""

    def __init__(
        self,
        *,
        request_id: str,
        request: ChatRequest,
        decision: RoutingDecision,
        pool: ExpertPool,
        emit: Emit,
        guards: Sequence[CallGuard] = (),
        caches: Sequence[CallCache] = (),
        preparers: Sequence[Preparer] = (),
        needs: Mapping[str, str] | None = None,
        drop_unsupported: bool = False,
    ) -> None:
        self.request_id = request_id
        self.request = request
        self.decision = decision
        self._pool = pool
        self._emit = emit
        self._guards = guards
        self._caches = caches
        self._preparers = preparers
        self._needs = needs
        self._drop_unsupported = drop_unsupported
        self.latency_ms: dict[str, float] = {}
        self.experts_used: list[str] = []
        self.fallbacks: list[FallbackRecord] = []
        self.notes: list[str] = []
        self.sources: list[dict[str, Any]] = []
        """What preparers gave the experts to read (pages, search results, files)."""
        self.reported_usage: Usage | None = None
        """Tokens over the successful calls that reported usage; None until one does."""
        self.cost_usd = 0.0
        self.streaming: str | None = None
        """The expert whose stream is being read, so a fallback's chunks carry its name."""

    @property
    def usage(self) -> Usage:
        """Tokens over every successful call so far (zero before any reported usage)."""
        return self.reported_usage if self.reported_usage is not None else Usage()

    def candidates(self) -> list[str]:
        """The chosen experts, then the decision's fallbacks, then each one's configured
        fallbacks: the order a fallback chain walks, without repeats."""
        order: list[str] = []
        for name in (*self.decision.experts, *self.decision.fallbacks):
            for candidate in (name, *self._pool[name].fallbacks):
                if candidate not in order:
                    order.append(candidate)
        return order

    def card(self, expert: str) -> ExpertCard:
        """An expert's card (cost, quality...), for combiners that weigh experts."""
        return self._pool[expert].card

    def note(self, text: str) -> None:
        """Tell the caller (in ``moe_metadata.notes``) what the combiner decided and why."""
        self.notes.append(text)

    def record_fallback(self, expert: str, error: Exception) -> None:
        message = error.message if isinstance(error, MoEError) else str(error)
        self.fallbacks.append(FallbackRecord(expert=expert, error=message))

    def continuing(self, sent: Sent) -> ChatRequest | None:
        """The request asking another expert for the rest of ``sent``, within what is left of
        the token limit; None when a continuation cannot be faithful: a tool call was streamed
        (continuing one turns it into prose), or the request asks for JSON or several choices."""
        request = self.request
        json_output = (request.upstream_extras().get("response_format") or {}).get("type")
        if sent.tool_calls or json_output not in (None, "text") or (request.n or 1) > 1:
            return None
        partial = sent.text
        messages = [
            *request.messages,
            ChatMessage(role="assistant", content=partial),
            ChatMessage(role="user", content=CONTINUE_NOTE),
        ]
        update: dict[str, Any] = {"messages": messages}
        if (limit := request.output_limit) is not None:
            left = max(1, limit - round(len(partial) / CHARS_PER_TOKEN))
            update["max_tokens" if request.max_tokens else "max_completion_tokens"] = left
        return request.model_copy(update=update)

    def hand_over(self, expert: str, error: Exception, to: str, sent: Sent) -> None:
        """Record that ``expert`` failed mid-stream and ``to`` carries on the answer."""
        self.record_fallback(expert, error)
        chars = len(sent.text)
        self.note(f"{expert} failed after streaming {chars} characters; {to} continues the answer")

    def prepare(self, request: ChatRequest | None = None) -> ChatRequest:
        """The request with the gate's overrides applied where the caller left a value unset."""
        request = request or self.request
        if not self.decision.overrides:
            return request
        overrides = {
            key: value
            for key, value in self.decision.overrides.items()
            if getattr(request, key, None) is None
        }
        return request.model_copy(update=overrides) if overrides else request

    async def call(self, expert: str, request: ChatRequest | None = None) -> ExpertResult:
        """Call one expert for a complete answer."""
        slot = self._pool[expert]
        if slot.state != "ready":
            slot.check_ready()
        prepared = await self._prepared(slot, request)
        if self._caches and (hit := await self._lookup(slot, prepared)) is not None:
            return hit
        if self._guards:
            await self._admit(slot)
        started = time.perf_counter()
        try:
            if slot.timeout_s is None:  # no timer to arm, the common case
                result = await slot.expert.generate(prepared)
            else:
                async with slot.timer():
                    result = await slot.expert.generate(prepared)
        except asyncio.CancelledError:
            await self._cancelled(slot, started, streamed=False)
            raise
        except Exception as exc:
            error = _as_moe_error(slot, exc)
            await self._record(slot, started, streamed=False, usage=None, error=error)
            if error is exc:
                raise
            raise error from exc
        await self._record(slot, started, streamed=False, usage=result.usage, error=None)
        for cache in self._caches:
            await cache.remember(self, expert, prepared, result)
        return result

    async def stream(self, expert: str, request: ChatRequest | None = None) -> AsyncIterator[Delta]:
        """Call one expert for a streamed answer; ``timeout_s`` bounds the wait for each chunk."""
        slot = self._pool[expert]
        slot.check_ready()
        prepared = await self._prepared(slot, request)
        if self._caches and (hit := await self._lookup(slot, prepared, streamed=True)) is not None:
            yield Delta.whole(hit)
            return
        if self._guards:
            await self._admit(slot)
        started = time.perf_counter()
        self.streaming = slot.name
        usage: Usage | None = None
        seen: list[Delta] | None = [] if self._caches else None
        try:
            async with aclosing(slot.expert.stream(prepared)) as deltas:
                while True:
                    try:
                        if slot.timeout_s is None:  # no timer per chunk (each costs microseconds)
                            delta = await anext(deltas)
                        else:
                            async with slot.timer():
                                delta = await anext(deltas)
                    except StopAsyncIteration:
                        break
                    usage = delta.usage or usage
                    if seen is not None:
                        seen.append(delta)
                    yield delta
        except (GeneratorExit, asyncio.CancelledError):
            # The consumer stopped early (the client went away, a race was lost): not an outcome
            # of the expert's, but trackers hear of it (a breaker frees its probe's claim).
            await self._cancelled(slot, started, streamed=True)
            raise
        except Exception as exc:
            error = _as_moe_error(slot, exc)
            await self._record(slot, started, streamed=True, usage=usage, error=error)
            if error is exc:
                raise
            raise error from exc
        await self._record(slot, started, streamed=True, usage=usage, error=None)
        if seen and not any(delta.tool_calls for delta in seen):
            result = ExpertResult(
                content="".join(delta.content or "" for delta in seen),
                finish_reason=next((d.finish_reason for d in seen if d.finish_reason), "stop"),
                usage=usage,
            )
            for cache in self._caches:
                await cache.remember(self, expert, prepared, result)

    async def _cancelled(self, slot: ExpertSlot, started: float, *, streamed: bool) -> None:
        """Report a call abandoned before its answer (a lost race, a client gone): a
        :class:`CallCancelled`, which no breaker counts against the expert."""
        error = CallCancelled(slot.name)
        with contextlib.suppress(Exception):
            await self._record(slot, started, streamed=streamed, usage=None, error=error)

    async def _lookup(
        self, slot: ExpertSlot, request: ChatRequest, *, streamed: bool = False
    ) -> ExpertResult | None:
        for cache in self._caches:
            hit = await cache.lookup(self, slot.name, request)
            if hit is not None:
                started = time.perf_counter()
                await self._record(slot, started, streamed=streamed, usage=None, cached=True)
                return hit
        return None

    async def _prepared(self, slot: ExpertSlot, request: ChatRequest | None) -> ChatRequest:
        """The request as this expert gets it: overrides, then each preparer, then the budget."""
        prepared = self.prepare(request)
        for preparer in self._preparers:
            try:
                prepared = await preparer.prepare(self, slot.name, prepared)
            except MoEError:
                raise
            except Exception as exc:
                raise ExpertFailed(
                    f"preparer {preparer.name!r} failed before expert {slot.name!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        if self._needs:  # checked after the preparers, which may have met a need (images)
            prepared = self._fit(slot, prepared)
        self._check_budget(slot, prepared)
        return prepared

    def _fit(self, slot: ExpertSlot, request: ChatRequest) -> ChatRequest:
        """A 400 naming what this expert cannot honour, or the request without it where the
        configuration drops unsupported parameters."""
        lacking = capabilities.missing(slot.card, capabilities.needs(request))
        if not lacking:
            return request
        if not self._drop_unsupported:
            raise capabilities.unsupported(slot.name, lacking)
        request, dropped = capabilities.without(request, lacking)
        self.note(f"dropped {', '.join(dropped)} for {slot.name!r}, which does not support them")
        return request

    async def _admit(self, slot: ExpertSlot) -> None:
        await admit(self._guards, slot)

    def _check_budget(self, slot: ExpertSlot, request: ChatRequest) -> None:
        """Refuse to start a call whose worst case would take the request past its budget.

        The prompt is estimated at four characters a token; the answer at the request's token
        limit, else the expert's, else 1,024 tokens. Spent money comes from reported usage."""
        hints = self.request.moe
        budget = None if hints is None else hints.budget_usd
        card = slot.card
        if budget is None or not (card.cost_per_1k_input or card.cost_per_1k_output):
            return
        prompt_chars = sum(len(message.text()) for message in request.messages)
        prompt_tokens = prompt_chars / CHARS_PER_TOKEN
        answer_tokens = request.output_limit or card.max_output_tokens or DEFAULT_OUTPUT_TOKENS
        worst = (
            prompt_tokens * card.cost_per_1k_input + answer_tokens * card.cost_per_1k_output
        ) / 1000
        if self.cost_usd + worst > budget:
            raise BudgetExceeded(
                f"expert {slot.name!r} not called: up to ${worst:.6f} more would pass the "
                f"request's budget of ${budget:.6f} (${self.cost_usd:.6f} spent)"
            )

    async def _record(
        self,
        slot: ExpertSlot,
        started: float,
        *,
        streamed: bool,
        usage: Usage | None,
        error: Exception | None = None,
        cached: bool = False,
    ) -> None:
        latency_ms = elapsed_ms(started)
        self.latency_ms[slot.name] = latency_ms
        cost = None
        if error is None:
            self.experts_used.append(slot.name)
            if usage is not None:
                so_far = self.reported_usage
                self.reported_usage = usage if so_far is None else so_far + usage
                cost = (
                    usage.prompt_tokens * slot.card.cost_per_1k_input
                    + usage.completion_tokens * slot.card.cost_per_1k_output
                ) / 1000
                self.cost_usd += cost
        moe_error = error if isinstance(error, MoEError) else None
        hints = self.request.moe
        await self._emit(
            ExpertCalled(
                request_id=self.request_id,
                expert=slot.name,
                provider=slot.card.provider,
                task_type=None if hints is None else hints.task_type,
                latency_ms=latency_ms,
                ok=error is None,
                streamed=streamed,
                usage=usage,
                cost_usd=cost,
                error=None if error is None else str(getattr(error, "message", error)),
                error_code=moe_error.code if moe_error else None,
                error_status=moe_error.status if moe_error else None,
                retry_after=moe_error.headers.get("Retry-After") if moe_error else None,
                cached=cached,
                cancelled=isinstance(error, CallCancelled),
            )
        )


async def admit(guards: Sequence[CallGuard], slot: ExpertSlot) -> None:
    """Ask every guard whether ``slot``'s expert may be called; a refusal is its
    :class:`MoEError`. A guard that cannot decide (its store is down) lets the call through:
    losing a breaker or a limit for a moment beats refusing every request."""
    for guard in guards:
        try:
            await guard.admit(slot.name, slot.card.provider)
        except MoEError:
            raise
        except Exception as exc:
            log.warning("guard.failed", guard=type(guard).__name__, error=str(exc))


def _as_moe_error(slot: ExpertSlot, exc: Exception) -> Exception:
    """Map what an expert raised to an error a caller can read, never a bare stack trace."""
    if isinstance(exc, MoEError):
        return exc
    if isinstance(exc, TimeoutError):
        return ExpertTimeout(f"expert {slot.name!r} did not answer within {slot.timeout_s} s")
    return ExpertFailed(f"expert {slot.name!r} failed: {type(exc).__name__}: {exc}")
