"""Hook implementations only; the routes are in :mod:`moe_webui.frontend`."""

from __future__ import annotations

from moe_core import Register, hookimpl
from moe_webui.frontend import WebUIFrontend, WebUIOptions


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("webui", WebUIFrontend, options=WebUIOptions)
