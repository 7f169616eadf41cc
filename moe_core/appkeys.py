"""Typed keys for what the aiohttp application and each request carry, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from moe_core.errors import MoEError
    from moe_core.orchestrator import MoE

ErrorRenderer = Callable[[web.Request, "MoEError"], web.StreamResponse]

MOE_KEY: web.AppKey[MoE] = web.AppKey("moe")
API_KEYS_KEY: web.AppKey[frozenset[bytes]] = web.AppKey("api_keys")  # UTF-8 encoded
ADMIN_KEYS_KEY: web.AppKey[frozenset[bytes]] = web.AppKey("admin_keys")
BODY_LIMIT_KEY: web.AppKey[int] = web.AppKey("body_limit")
BODY_TIMEOUT_KEY: web.AppKey[float] = web.AppKey("body_timeout")
CUT_WARNINGS_KEY: web.AppKey[set[Callable[[], Awaitable[object]]]] = web.AppKey("cut_warnings")
START_ERROR_KEY: web.AppKey[list[BaseException]] = web.AppKey("start_error")
# Paths answered without a key: health probes, and a page that asks for the key (frontends add).
PUBLIC_PATHS_KEY: web.AppKey[set[str]] = web.AppKey("public_paths")
# (path, renderer): errors on a path and below it in the wire format of the frontend serving it.
ERROR_RENDERERS_KEY: web.AppKey[list[tuple[str, ErrorRenderer]]] = web.AppKey("error_renderers")
REQUEST_ID_KEY: web.RequestKey[str] = web.RequestKey("request_id")
