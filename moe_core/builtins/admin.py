"""The ``admin`` frontend: health, installed plugins, tracker statistics."""

from __future__ import annotations

import asyncio
import functools
import importlib.util

from aiohttp import web

from moe_core.appkeys import MOE_KEY
from moe_core.http import json_response
from moe_core.parts import Frontend
from moe_core.plugins import Register, distribution_version, hookimpl


class AdminFrontend(Frontend):
    """``GET /health``, ``GET /-/plugins`` and ``GET /-/stats``."""

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/health", health)
        app.router.add_get("/-/plugins", plugins)
        app.router.add_get("/-/stats", stats)


async def health(request: web.Request) -> web.Response:
    """200 while at least one expert can answer; 503 while none can (loading or failed)."""
    moe = request.app[MOE_KEY]
    experts = {name: slot.status() for name, slot in moe.experts.items()}
    states = {status["state"] for status in experts.values()}
    if states == {"ready"}:
        status = "ok"
    elif "ready" in states:
        status = "degraded"
    elif "loading" in states or "idle" in states:
        status = "loading"
    else:
        status = "unavailable"
    # The first call may import torch (seconds): never on the event loop.
    cuda = await asyncio.to_thread(cuda_available)
    return json_response(
        {
            "status": status,
            "version": distribution_version("moe-core"),
            "experts": experts,
            # The fields the seed's clients read: every expert loaded, and where models run.
            "models_loaded": states == {"ready"},
            "cuda_available": cuda,
            "device": "cuda" if cuda else "cpu",
        },
        status=200 if status in ("ok", "degraded") else 503,
    )


@functools.cache
def cuda_available() -> bool:
    """Whether torch is installed and sees a GPU (asked once: it does not change while serving)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


async def plugins(request: web.Request) -> web.Response:
    moe = request.app[MOE_KEY]
    return json_response([info.as_dict() for info in moe.plugins.infos.values()])


async def stats(request: web.Request) -> web.Response:
    moe = request.app[MOE_KEY]
    return json_response({name: tracker.snapshot() for name, tracker in moe.trackers.items()})


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("admin", AdminFrontend)
