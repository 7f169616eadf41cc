"""Gateways over the example model registry, with ``echo`` experts standing in for the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moe_core.orchestrator import MoE
from moe_core.testing import make_moe
from tests.plugins.moe_router.fakes import fake_signals_plugin

REGISTRY = Path(__file__).parents[3] / "examples" / "registry.yaml"


def registry_config(
    gate: dict[str, Any] | None = None, signals: dict[str, Any] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "registry": {"path": str(REGISTRY), "experts": {"kind": "echo"}},
        "gate": {"kind": "multi-factor", **(gate or {})},
    }
    if signals is not None:
        config["trackers"] = {"signals": {"kind": "fake-signals", **signals}}
    return config


def registry_moe(gate: dict[str, Any] | None = None, signals: dict[str, Any] | None = None) -> MoE:
    return make_moe(registry_config(gate, signals), plugins=[fake_signals_plugin])


def ask(text: str, **hints: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "moe": hints}


def filtered(decision: Any) -> dict[str, str]:
    """Expert -> the filter that removed it, from a decision's evidence."""
    return {
        expert: item["filter"]
        for item in decision.evidence
        if item.get("kind") == "filtered"
        for expert in item["experts"]
    }


def evidence(decision: Any, kind: str) -> list[dict[str, Any]]:
    return [item for item in decision.evidence if item.get("kind") == kind]
