"""Embedding a question with one of the gateway's experts, for semantic matching.

Experts that embed come from plugins this one cannot import, so "can embed" is the same
duck-typed protocol ``POST /v1/embeddings`` uses: an ``embed(texts, *, dimensions=None)``
coroutine returning ``(vectors, prompt_tokens)``. The call is made the way the pipeline makes
any call (the expert must be ready, call guards are asked, its timeout applies) and reported to
trackers as an :class:`~moe_core.events.ExpertCalled` with task type ``embed``, so that its cost
is counted and its breaker sees it. A failure only means no semantic match: it is logged and
the request goes on to the expert.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

import structlog

from moe_core import CallCancelled, ExpertFailed, ExpertTimeout, MoE, MoEError
from moe_core.events import ExpertCalled, elapsed_ms
from moe_core.models import Usage
from moe_core.pool import ExpertSlot

log = structlog.get_logger(__name__)

EMBED = "embed"
"""The task type of embedding calls in tracker events."""


@runtime_checkable
class Embedder(Protocol):
    """An expert that turns texts into vectors (one per text, in order) and says the tokens
    they took."""

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]: ...


async def embed_question(
    moe: MoE, slot: ExpertSlot, text: str, request_id: str
) -> list[float] | None:
    """The vector of ``text`` by the expert in ``slot``, or ``None`` when it cannot give one
    now (not ready, refused by a guard, failed, too slow)."""
    if slot.state != "ready":
        return None
    try:
        for guard in moe.guards:
            await guard.admit(slot.name, slot.card.provider)
    except Exception as exc:
        log.info("cache.embedder_refused", expert=slot.name, error=str(exc))
        return None
    expert: Embedder = slot.expert  # type: ignore[assignment] - checked at startup
    started = time.perf_counter()
    try:
        async with asyncio.timeout(slot.timeout_s):
            vectors, tokens = await expert.embed([text])
        vector = vectors[0]
    except asyncio.CancelledError:
        await _report(moe, slot, request_id, started, None, CallCancelled(slot.name))
        raise
    except Exception as exc:
        log.warning("cache.embedder_failed", expert=slot.name, error=repr(exc))
        await _report(moe, slot, request_id, started, None, _as_error(slot, exc))
        return None
    await _report(moe, slot, request_id, started, tokens, None)
    return vector


def _as_error(slot: ExpertSlot, exc: Exception) -> MoEError:
    if isinstance(exc, MoEError):
        return exc
    if isinstance(exc, TimeoutError):
        return ExpertTimeout(f"expert {slot.name!r} did not embed within {slot.timeout_s} s")
    return ExpertFailed(f"expert {slot.name!r} failed to embed: {type(exc).__name__}: {exc}")


async def _report(
    moe: MoE,
    slot: ExpertSlot,
    request_id: str,
    started: float,
    tokens: int | None,
    error: MoEError | None,
) -> None:
    await moe.emit(
        ExpertCalled(
            request_id=request_id,
            expert=slot.name,
            provider=slot.card.provider,
            task_type=EMBED,
            latency_ms=elapsed_ms(started),
            ok=error is None,
            streamed=False,
            usage=None if tokens is None else Usage.of(tokens, 0),
            cost_usd=None if tokens is None else tokens * slot.card.cost_per_1k_input / 1000,
            error=None if error is None else error.message,
            error_code=None if error is None else error.code,
            error_status=None if error is None else error.status,
            cancelled=isinstance(error, CallCancelled),
        )
    )
