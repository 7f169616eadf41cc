"""Embedding calls: the protocol of experts that turn texts into vectors, and the one guarded
way to call them.

Experts come from plugins that cannot import each other, so "can embed" is a duck-typed
protocol, and both the embeddings route and the semantic response cache call ``embed`` through
:func:`embed`, as the pipeline calls ``generate`` through :class:`~moe_core.run.Run`: ready
check, call guards, the expert's timeout, and one tracker event whatever the outcome.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog

from moe_core.errors import (
    CallCancelled,
    ExpertFailed,
    ExpertTimeout,
    MoEError,
    UpstreamError,
)
from moe_core.events import ExpertCalled, elapsed_ms
from moe_core.models import Usage
from moe_core.run import admit

if TYPE_CHECKING:
    from moe_core.orchestrator import MoE
    from moe_core.pool import ExpertSlot

log = structlog.get_logger(__name__)

EMBED = "embed"
"""The capability (on a card) and the task type (in tracker events) of embedding."""


@runtime_checkable
class Embedder(Protocol):
    """An expert that turns texts into vectors.

    ``embed`` returns ``(vectors, prompt_tokens)``: one vector (a list of floats) per text, in
    order, and the tokens all the texts took together. It raises
    :class:`~moe_core.InvalidRequest` with ``param="dimensions"`` when it cannot make vectors of
    ``dimensions`` numbers, and with ``param="model"`` when this instance cannot embed at all
    (a ``longformer`` expert configured without an embedding checkpoint). Concurrent calls may
    share the model's forward passes; that is the expert's business.
    """

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]: ...


async def embed(
    moe: MoE,
    slot: ExpertSlot,
    texts: list[str],
    *,
    request_id: str,
    dimensions: int | None = None,
) -> tuple[list[list[float]], int]:
    """``slot``'s vectors for ``texts`` and the tokens they took; a :class:`MoEError` when the
    expert is not ready, a guard refuses, or the call fails or outlasts ``timeout_s``."""
    slot.check_ready()
    await admit(moe.guards, slot)
    expert: Embedder = slot.expert  # type: ignore[assignment] - callers check the protocol
    started = time.perf_counter()
    try:
        async with asyncio.timeout(slot.timeout_s):
            vectors, tokens = await expert.embed(texts, dimensions=dimensions)
        if len(vectors) != len(texts):
            raise UpstreamError(
                f"expert {slot.name!r} returned {len(vectors)} vectors for {len(texts)} texts"
            )
    except asyncio.CancelledError:
        await moe.emit(_called(slot, request_id, started, None, CallCancelled(slot.name)))
        raise
    except Exception as exc:
        error = _as_error(slot, exc)
        await moe.emit(_called(slot, request_id, started, None, error))
        if error is exc:
            raise
        raise error from exc
    await moe.emit(_called(slot, request_id, started, tokens, None))
    return vectors, tokens


def _as_error(slot: ExpertSlot, exc: Exception) -> MoEError:
    if isinstance(exc, MoEError):
        return exc
    if isinstance(exc, TimeoutError):
        return ExpertTimeout(f"expert {slot.name!r} did not answer within {slot.timeout_s} s")
    log.error("embeddings.expert_failed", expert=slot.name, error=repr(exc))
    return ExpertFailed(f"expert {slot.name!r} failed: {type(exc).__name__}: {exc}")


def _called(
    slot: ExpertSlot, request_id: str, started: float, tokens: int | None, error: MoEError | None
) -> ExpertCalled:
    return ExpertCalled(
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
