"""The ``cache`` plugin's hooks: the ``response-cache`` tracker kind and its ``Cache-Control``
middleware (added only where a response cache is configured)."""

from __future__ import annotations

from aiohttp import web

from moe_cache.middleware import cache_control_middleware
from moe_cache.options import CacheOptions
from moe_cache.tracker import ResponseCacheTracker
from moe_core import MoE, Register, hookimpl
from moe_core.plugins import AddMiddleware

KIND = "response-cache"


@hookimpl
def moe_register_trackers(register: Register) -> None:
    register(KIND, ResponseCacheTracker, options=CacheOptions)


@hookimpl
def moe_setup_app(app: web.Application, moe: MoE, add_middleware: AddMiddleware) -> None:
    if any(isinstance(tracker, ResponseCacheTracker) for tracker in moe.trackers.values()):
        add_middleware(cache_control_middleware, stage="routes")
