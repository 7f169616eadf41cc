"""The ``otel`` configuration section, and when tracing is on.

Tracing costs every request a few spans, so it is on only where asked for: an ``otel`` section
in the configuration, or the standard OpenTelemetry environment variables that say where spans
go (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or an
``OTEL_TRACES_EXPORTER`` other than ``none``). Then a tracker of kind ``otel`` is added to the
configuration's trackers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from moe_core import Options
from moe_core.config import add_tracker as add_configured_tracker

SECTION = "otel"
KIND = "otel"
TRACKER_NAME = "otel"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class OTelConfig(Options):
    """``otel``: where the gateway's spans go and what they hold."""

    enabled: bool | None = Field(
        None,
        description="Trace requests; default: yes when this section is given or the OTEL_* "
        "environment says where to export.",
    )
    service_name: str | None = Field(
        None, description="The service.name resource attribute; default: $OTEL_SERVICE_NAME, moe."
    )
    exporter: Literal["otlp", "console", "none"] | None = Field(
        None,
        description="Where spans go when the process has no tracer provider of its own: OTLP "
        "over HTTP (the otlp extra), the console, or nowhere; default: $OTEL_TRACES_EXPORTER, "
        "else otlp.",
    )
    endpoint: str | None = Field(
        None,
        description="The OTLP/HTTP traces URL (http://collector:4318/v1/traces); default: "
        "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT, localhost:4318.",
    )
    trace_trackers: bool = Field(
        True, description="A span for each tracker's work on each event of a request."
    )


def wanted(data: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a raw configuration (or, without an ``otel`` section, the environment) asks for
    tracing."""
    if SECTION in data:
        section = data[SECTION] or {}
        return not isinstance(section, dict) or section.get("enabled", True) is not False
    if any(environ.get(variable) for variable in ENDPOINT_VARIABLES):
        return True
    return environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() not in ("", "none")


def add_tracker(data: dict[str, Any]) -> None:
    """Add the tracing tracker last to a raw configuration's trackers, where tracing is wanted
    and no tracker of kind ``otel`` is configured. Values of the wrong type are left for
    validation to report with their key path."""
    if wanted(data):
        add_configured_tracker(data, TRACKER_NAME, KIND, plugin="moe-otel", section=SECTION)
