"""Tiny random ByT5, Longformer and LED checkpoints, built once per test session, and the
configuration the seed's service runs with (its three model names, fallbacks between them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moe_byt5.testing import build_byt5
from moe_longformer.testing import build_led, build_longformer


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "byt5": build_byt5(root / "byt5"),
        "longformer": build_longformer(root / "longformer"),
        "led": build_led(root / "led"),
    }


def service_config(models: dict[str, Path], **gate_options: Any) -> dict[str, Any]:
    """What plugins/moe_byt5/examples/process.yaml configures, on the tiny checkpoints."""
    return {
        "experts": {
            "moe-expert-byt5": {
                "kind": "byt5",
                "checkpoint": str(models["byt5"]),
                "max_new_tokens": 8,
                "fallbacks": ["moe-expert-longformer"],
            },
            "moe-expert-longformer": {
                "kind": "longformer",
                "embed_checkpoint": str(models["longformer"]),
                "summarize_checkpoint": str(models["led"]),
                "max_new_tokens": 6,
                "fallbacks": ["moe-expert-byt5"],
            },
        },
        "gate": {
            "kind": "features",
            "aliases": ["moe-auto"],
            "experts": {"byt5": "moe-expert-byt5", "longformer": "moe-expert-longformer"},
            **gate_options,
        },
    }


@pytest.fixture
def config(tiny_models: dict[str, Path]) -> dict[str, Any]:
    return service_config(tiny_models)
