"""The ``admin`` frontend: health, installed plugins, tracker statistics."""

from __future__ import annotations

import asyncio
import functools
import importlib.util

from aiohttp import web

from moe_core.appkeys import MOE_KEY
from moe_core.errors import ConfigError, InvalidRequest
from moe_core.http import json_response
from moe_core.parts import Frontend
from moe_core.plugins import Register, distribution_version, hookimpl
from moe_core.reload import reload
from moe_core.server import require_admin
from moe_core.workers import tell_supervisor_to_reload


class AdminFrontend(Frontend):
    """``GET /health``, ``GET /health/live``, ``GET /-/plugins``, ``GET /-/stats`` and
    ``POST /-/reload``."""

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/health", health)
        app.router.add_get("/health/live", live)
        app.router.add_get("/-/plugins", plugins)
        app.router.add_get("/-/stats", stats)
        app.router.add_post("/-/reload", reload_config)


async def live(request: web.Request) -> web.Response:
    """Liveness: the process answers (models may still be loading)."""
    return json_response({"status": "live"})


async def health(request: web.Request) -> web.Response:
    """Readiness: 503 ``loading`` until the gate and every expert have loaded (with progress),
    then 200 ``ok``, or ``degraded`` while some experts failed and others answer; 503
    ``unavailable`` when none can."""
    moe = request.app[MOE_KEY]
    experts = {name: slot.status() for name, slot in moe.experts.items()}
    states = [status["state"] for status in experts.values()]
    if not moe.ready or "loading" in states or "idle" in states:
        status = "loading"
    elif all(state == "ready" for state in states):
        status = "ok"
    elif "ready" in states:
        status = "degraded"
    else:
        status = "unavailable"
    # The first call may import torch (seconds): never on the event loop.
    cuda = await asyncio.to_thread(cuda_available)
    return json_response(
        {
            "status": status,
            "version": distribution_version("moe-core"),
            "gate": "ready" if moe.ready else "loading",
            "progress": {"experts_ready": states.count("ready"), "experts": len(states)},
            "experts": experts,
            # The fields the seed's clients read: every expert loaded, and where models run.
            "models_loaded": moe.ready and states.count("ready") == len(states),
            "cuda_available": cuda,
            "device": "cuda" if cuda else "cpu",
        },
        status=200 if status in ("ok", "degraded") else 503,
        headers={"Retry-After": "5"} if status == "loading" else None,
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


async def reload_config(request: web.Request) -> web.Response:
    """Re-read the configuration file and swap in what changed (admin key); a configuration
    that is not valid is a 400 naming its key, and the running one goes on serving."""
    require_admin(request)
    try:
        report = await reload(request.app[MOE_KEY])
    except ConfigError as exc:
        raise InvalidRequest(f"not reloaded: {exc}", code="invalid_config") from None
    tell_supervisor_to_reload()  # under --workers, the other workers reload too
    return json_response({"reloaded": True, **report})


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("admin", AdminFrontend)
