"""The ``metrics`` configuration section, and the tracker it adds to every configuration.

Metrics are on wherever the plugin is installed: a configuration that names no tracker of kind
``metrics`` gets one (called ``metrics``) before it is validated, so that ``/metrics`` counts
what every other tracker sees without anyone having to remember to configure it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from moe_core import ConfigError, MoEConfig, Options

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
    trackers = data.get("trackers")
    if trackers is None:
        # The core's own default (the memory tracker) must survive the addition.
        default = MoEConfig.model_fields["trackers"].get_default(call_default_factory=True)
        trackers = {name: instance.model_dump() for name, instance in default.items()}
    if not isinstance(trackers, dict):
        return
    if any(
        isinstance(tracker, dict) and tracker.get("kind") == KIND for tracker in trackers.values()
    ):
        return
    if TRACKER_NAME in trackers:
        raise ConfigError(
            f"trackers.{TRACKER_NAME}: the name is taken by another kind, and moe-metrics adds "
            f"its tracker under it; rename that tracker, configure one of kind {KIND!r} "
            f"yourself, or set {SECTION}.enabled: false"
        )
    data["trackers"] = {**trackers, TRACKER_NAME: {"kind": KIND}}
