"""Embedding a question with one of the gateway's experts, for semantic matching.

The call goes through :func:`moe_core.embedding.embed`, the way ``POST /v1/embeddings`` makes
it and the pipeline makes any call: the expert must be ready, call guards are asked, its
timeout applies, and trackers hear of it with task type ``embed``, so that its cost is counted
and its breaker sees it. A failure only means no semantic match: it is logged and the request
goes on to the expert.
"""

from __future__ import annotations

import structlog

from moe_core import ExpertUnavailable, MoE, MoEError, RateLimited
from moe_core.embedding import embed
from moe_core.pool import ExpertSlot

log = structlog.get_logger(__name__)


async def embed_question(
    moe: MoE, slot: ExpertSlot, text: str, request_id: str
) -> list[float] | None:
    """The vector of ``text`` by the expert in ``slot``, or ``None`` when it cannot give one
    now (not ready, refused by a guard, failed, too slow)."""
    if slot.state != "ready":
        return None
    try:
        vectors, _ = await embed(moe, slot, [text], request_id=request_id)
    except (ExpertUnavailable, RateLimited) as exc:  # a guard's refusal: an open breaker, a limit
        log.info("cache.embedder_refused", expert=slot.name, error=exc.message)
        return None
    except MoEError as exc:
        log.warning("cache.embedder_failed", expert=slot.name, error=exc.message)
        return None
    return vectors[0]
