"""``Cache-Control`` on a request: a caller's say over the cache, as HTTP defines it.

``no-store``: the answer is neither taken from the cache nor kept in it (private data).
``no-cache`` (or ``max-age=0``): the answer is fresh from the expert, and replaces what was
cached. The middleware puts that in :data:`POLICY`, a context variable the cache reads on every
expert call: calls run in the handler's task or in tasks it starts, which copy its context.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple

from aiohttp import hdrs, web

from moe_core.server import Handler


class Policy(NamedTuple):
    """What this request allows the cache to do."""

    read: bool
    write: bool


READ_WRITE = Policy(read=True, write=True)
POLICY: ContextVar[Policy] = ContextVar("moe_cache_policy", default=READ_WRITE)
"""The current request's policy; outside HTTP (the Python API) the cache may read and write."""


def policy_of(header: str) -> Policy:
    """The policy a ``Cache-Control`` request header asks for (directives are case-insensitive
    and unknown ones are ignored, as HTTP says)."""
    directives = {part.strip().lower().replace(" ", "") for part in header.split(",")}
    if "no-store" in directives:
        return Policy(read=False, write=False)
    if "no-cache" in directives or "max-age=0" in directives:
        return Policy(read=False, write=True)
    return READ_WRITE


@web.middleware
async def cache_control_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set :data:`POLICY` for the request from its ``Cache-Control`` header, if it has one."""
    header = request.headers.get(hdrs.CACHE_CONTROL)
    if header is None:
        return await handler(request)
    token = POLICY.set(policy_of(header))
    try:
        return await handler(request)
    finally:
        POLICY.reset(token)
