"""The ``otel`` plugin's hooks: its config section, its tracker, the server spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from moe_core import AddRequestObserver, MoE, Register, RegisterSection, hookimpl
from moe_otel.config import KIND, SECTION, OTelConfig, add_tracker
from moe_otel.http import ServerSpans
from moe_otel.tracker import OTelTracker


@hookimpl
def moe_register_trackers(register: Register) -> None:
    register(KIND, OTelTracker)


@hookimpl
def moe_config_sections(register: RegisterSection) -> None:
    register(SECTION, OTelConfig)


@hookimpl
def moe_prepare_config(data: dict[str, Any], base_dir: Path, source: str) -> None:
    add_tracker(data)


@hookimpl
def moe_setup_app(app: web.Application, moe: MoE, add_request_observer: AddRequestObserver) -> None:
    tracker = next((t for t in moe.trackers.values() if isinstance(t, OTelTracker)), None)
    if tracker is not None:
        add_request_observer(ServerSpans(tracker))
