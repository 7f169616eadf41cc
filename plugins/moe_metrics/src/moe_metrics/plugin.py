"""The ``metrics`` plugin's hooks: its config section, its tracker, and ``/metrics``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from moe_core import AddRequestObserver, MoE, Register, RegisterSection, hookimpl
from moe_metrics.config import KIND, SECTION, MetricsConfig, add_tracker
from moe_metrics.http import mount
from moe_metrics.tracker import MetricsTracker


@hookimpl
def moe_register_trackers(register: Register) -> None:
    register(KIND, MetricsTracker)


@hookimpl
def moe_config_sections(register: RegisterSection) -> None:
    register(SECTION, MetricsConfig)


@hookimpl
def moe_prepare_config(data: dict[str, Any], base_dir: Path, source: str) -> None:
    add_tracker(data)


@hookimpl
def moe_setup_app(app: web.Application, moe: MoE, add_request_observer: AddRequestObserver) -> None:
    tracker = next((t for t in moe.trackers.values() if isinstance(t, MetricsTracker)), None)
    if tracker is not None:
        mount(app, tracker, add_request_observer)
