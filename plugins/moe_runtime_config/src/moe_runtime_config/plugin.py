"""The ``runtime-config`` plugin: the overlay applied on every load, and its HTTP routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moe_core import Register, hookimpl
from moe_runtime_config.overlay import Overlay
from moe_runtime_config.routes import RuntimeConfigFrontend


@hookimpl
def moe_prepare_config(data: dict[str, Any], base_dir: Path, source: str) -> None:
    overlay = Overlay.beside(source)
    if overlay is not None:
        overlay.apply(data)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("runtime-config", RuntimeConfigFrontend)
