"""Fixtures: the fake Pollinations API on loopback, and configs that point every part at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moe_pollinations.registry import experts_config, snapshot
from moe_pollinations.testing import FakePollinations


@pytest.fixture
async def fake() -> AsyncIterator[FakePollinations]:
    fake = await FakePollinations().start()
    yield fake
    await fake.close()


@pytest.fixture
def connection(fake: FakePollinations, tmp_path: Path) -> dict[str, Any]:
    """Options every Pollinations part needs to use the fake (and a private listing cache)."""
    return {**fake.options(), "backoff_s": 0.01, "token_env": None, "referrer_env": None}


@pytest.fixture
def expert_options(connection: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return {**connection, "cache_dir": str(tmp_path / "cache")}


def full_config(
    expert_options: dict[str, Any],
    connection: dict[str, Any],
    *,
    classifier: str = "heuristic",
    gate: dict[str, Any] | None = None,
    experts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every snapshot model as an expert, the task-classifier gate, the single combiner, and
    ``GET /{prompt}`` mounted, as the example configuration does."""
    config_experts = experts_config(snapshot(), **expert_options)
    for name, extra in (experts or {}).items():
        config_experts[name].update(extra)
    return {
        "experts": config_experts,
        "gate": {"kind": "task-classifier", "classifier": classifier, **connection, **(gate or {})},
        "combiner": {"kind": "single"},
        "trackers": {},
        "server": {"frontends": {"pollinations": {"enabled": True}}},
    }
