"""The ``metrics`` configuration section, and the tracker it adds to every configuration.

Metrics are on wherever the plugin is installed: a configuration that names no tracker of kind
``metrics`` gets one (called ``metrics``) before it is validated, so that ``/metrics`` counts
what every other tracker sees without anyone having to remember to configure it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from moe_core import Options
from moe_core.config import add_tracker as add_configured_tracker

SECTION = "metrics"
KIND = "metrics"
TRACKER_NAME = "metrics"


class MetricsConfig(Options):
    """``metrics``: Prometheus metrics at ``path``, and the ``x-moe-overhead-ms`` header."""

    enabled: bool = Field(
        True,
        description="Add the metrics tracker to the configuration; false: no /metrics unless "
        "a tracker of kind metrics is configured by hand.",
    )
    path: str = Field("/metrics", pattern=r"^/\S*$", description="Where Prometheus scrapes.")
    admin_only: bool = Field(
        True,
        description="Where API keys are configured, a scrape needs an admin key "
        "(server.admin_keys_env); false: any API key may scrape.",
    )


def add_tracker(data: dict[str, Any]) -> None:
    """Add the metrics tracker to a raw configuration, unless it has one or disables metrics.

    Values of the wrong type are left alone: validation then reports them with their key path.
    """
    section = data.get(SECTION) or {}
    if not isinstance(section, dict) or section.get("enabled", True) is not True:
        return
    add_configured_tracker(data, TRACKER_NAME, KIND, plugin="moe-metrics", section=SECTION)
