"""Tiny random Longformer and LED checkpoints (and a byte-level BPE tokenizer trained on the
spot), built once per test session: the real loading and inference paths, no download."""

from __future__ import annotations

from pathlib import Path

import pytest

from moe_longformer.testing import build_led, build_longformer


@pytest.fixture(scope="session")
def tiny_longformer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("longformer")
    return {"embed": build_longformer(root / "longformer"), "summarize": build_led(root / "led")}


@pytest.fixture
def longformer_config(tiny_longformer: dict[str, Path]) -> dict:
    return {
        "kind": "longformer",
        "embed_checkpoint": str(tiny_longformer["embed"]),
        "summarize_checkpoint": str(tiny_longformer["summarize"]),
        "max_new_tokens": 6,
    }
