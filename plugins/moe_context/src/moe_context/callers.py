"""Who is calling: the identity files belong to, taken from the request's bearer key.

With keys configured (``server.api_keys_env``), a caller is the SHA-256 of its key, so that
files uploaded with one key are invisible to every other key and the key itself is never
stored; without keys every caller is the same (``None``). A middleware puts the identity in a
context variable for the length of the request, so that a preparer reading a file referenced
in a chat message checks the same owner as the files routes do.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar

from aiohttp import web

from moe_core.appkeys import API_KEYS_KEY
from moe_core.server import Handler, bearer_key

CALLER: ContextVar[str | None] = ContextVar("moe_context_caller", default=None)


def owner_of(request: web.Request) -> str | None:
    """The identity of the request's caller: a hash of its key when keys are configured."""
    if not request.app[API_KEYS_KEY]:
        return None
    key = bearer_key(request)
    if key is None:
        return None
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@web.middleware
async def caller_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = CALLER.set(owner_of(request))
    try:
        return await handler(request)
    finally:
        CALLER.reset(token)
