"""Per-key rate limits over HTTP: a middleware in the ``limits`` stage, after authentication.

Each request is counted against its API key's limits before it is handled (after auth, so a
rejected key spends nothing), and the caller is named for the token count of its expert calls
(:data:`moe_tracking.ratelimit.CALLER_KEY`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web

from moe_core.appkeys import PUBLIC_PATHS_KEY
from moe_core.errors import MoEError
from moe_core.server import Handler, bearer_key
from moe_tracking.ratelimit import CALLER_KEY, RateLimitTracker, key_id

log = structlog.get_logger(__name__)

UNLIMITED_PREFIXES = ("/-/", "/v1/rate-limits", "/metrics")  # operators, not clients
"""Paths rate limits never count: introspection, and the usage a limited caller wants to see."""


def rate_limit_middleware(
    limiters: Sequence[RateLimitTracker],
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware counting each request against every limiter's per-key limits."""

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        public = request.app[PUBLIC_PATHS_KEY]
        if request.path in public or request.path.startswith(UNLIMITED_PREFIXES):
            return await handler(request)
        caller = key_id(bearer_key(request))
        for limiter in limiters:
            try:
                await limiter.admit_key(caller)
            except MoEError:
                raise
            except Exception as exc:  # its store is down: serve rather than refuse everyone
                log.warning("rate_limit.failed", error=str(exc))
        token = CALLER_KEY.set(caller)
        try:
            return await handler(request)
        finally:
            CALLER_KEY.reset(token)

    return rate_limit
