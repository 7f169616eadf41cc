"""The ``router`` plugin's hooks: the multi-factor gate, its consensus strategies, the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moe_core import Register, hookimpl
from moe_core.plugins import RegisterSection
from moe_router.consensus import (
    JudgeCombiner,
    JudgeOptions,
    QualityWeightedCombiner,
    VoteCombiner,
    VoteOptions,
)
from moe_router.multi_factor import MultiFactorGate, MultiFactorOptions
from moe_router.registry import SECTION, RegistryConfig, expand_registry


@hookimpl
def moe_register_gates(register: Register) -> None:
    register("multi-factor", MultiFactorGate, options=MultiFactorOptions)


@hookimpl
def moe_register_combiners(register: Register) -> None:
    register("parallel-vote", VoteCombiner, options=VoteOptions)
    register("quality-weighted", QualityWeightedCombiner, options=VoteOptions)
    register("judge", JudgeCombiner, options=JudgeOptions)


@hookimpl
def moe_config_sections(register: RegisterSection) -> None:
    register(SECTION, RegistryConfig)


@hookimpl
def moe_prepare_config(data: dict[str, Any], base_dir: Path, source: str) -> None:
    """A ``registry`` section becomes the cards (and, with a template, the entries) of experts."""
    data.update(expand_registry(data, base_dir, source))
