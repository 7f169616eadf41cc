"""The model registry: loading, attaching cards to experts, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moe_core.config import load_config
from moe_core.errors import ConfigError
from moe_core.testing import make_moe
from moe_router.registry import load_registry
from tests.plugins.moe_router.helpers import REGISTRY

EXAMPLE_CONFIG = REGISTRY.parent / "multi-factor.yaml"

MODEL = {
    "id": "m1",
    "provider": "acme",
    "cost_per_1k_input": 0.001,
    "cost_per_1k_output": 0.002,
    "context_window": 8000,
    "quality_score": 0.8,
}


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_example_registry_has_twenty_models_from_seven_providers():
    registry = load_registry(REGISTRY)
    assert len(registry.models) == 20
    assert {m.provider for m in registry.models} == {
        "anthropic",
        "openai",
        "google",
        "mistral",
        "cohere",
        "deepseek",
        "meta",
    }
    cards = registry.cards()
    assert cards["gemini-pro-1.5"]["task_preferences"]["long_context"] == 1.0
    assert cards["gemini-flash-1.5"]["task_preferences"]["long_context"] == 0.5
    assert cards["gpt-4o"]["supports_json"] is True  # from supports_json_mode
    assert cards["claude-haiku-4"]["modalities_in"] == ["text", "image"]  # from supports_vision


def test_the_example_config_makes_an_openai_expert_per_model_at_the_env_base_url(monkeypatch):
    monkeypatch.setenv("MOE_UPSTREAM_BASE_URL", "http://10.0.0.5:9000/v1")
    monkeypatch.setenv("MOE_UPSTREAM_API_KEY", "sk-test")
    moe = make_moe(EXAMPLE_CONFIG)
    assert len(moe.experts) == 20
    slot = moe.experts["claude-sonnet-4"]
    assert slot.kind == "openai"
    assert slot.expert.options.base_url == "http://10.0.0.5:9000/v1"
    assert slot.card.provider == "anthropic"
    assert slot.card.cost_per_1k_output == 0.015
    assert slot.card.latency_p95_ms == 3000
    assert slot.fallbacks == ["gpt-4o", "claude-haiku-4"]
    assert moe.experts["gemini-2.0-flash-thinking"].card.enabled is False

    monkeypatch.delenv("MOE_UPSTREAM_BASE_URL")
    default = make_moe(EXAMPLE_CONFIG)
    assert default.experts["o1"].expert.options.base_url == "http://127.0.0.1:4000/v1"


def test_an_experts_own_card_wins_over_the_registry_and_registry_id_attaches(tmp_path):
    registry = write(tmp_path, "models.yaml", {"models": [MODEL, {**MODEL, "id": "m2"}]})
    config = load_config(
        {
            "registry": str(registry),
            "experts": {
                "m1": {"kind": "echo", "card": {"quality": 0.9}},
                "local": {"kind": "echo", "registry_id": "m2"},
                "other": {"kind": "echo"},
            },
        }
    )
    assert config.experts["m1"].card.quality == 0.9
    assert config.experts["m1"].card.provider == "acme"
    assert config.experts["local"].card.context_window == 8000
    assert config.experts["other"].card is None
    assert "m2" not in config.experts  # no template: only named experts


def test_a_relative_registry_path_is_read_beside_the_config_file(tmp_path):
    write(tmp_path, "models.yaml", {"models": [MODEL]})
    config_path = write(
        tmp_path, "moe.yaml", {"registry": {"path": "models.yaml", "experts": {"kind": "echo"}}}
    )
    config = load_config(config_path)
    assert list(config.experts) == ["m1"]
    assert config.experts["m1"].kind == "echo"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (
            [MODEL, {**MODEL, "id": "m2", "cost_per_1k_input": -1}],
            "models[1].cost_per_1k_input (model 'm2'): Input should be greater than or equal",
        ),
        ([{**MODEL, "quality_score": 1.5}], "models[0].quality_score (model 'm1'): Input"),
        ([{**MODEL, "colour": "red"}], "models[0].colour (model 'm1'): unknown key"),
        ([MODEL, MODEL], "models[1].id: 'm1' is listed twice"),
        ([{**MODEL, "fallback_models": ["nope"]}], "models[0].fallback_models[0]: unknown model"),
        (
            [{**MODEL, "latency_p50_ms": 900, "latency_p95_ms": 100}],
            "latency_p95_ms (100) is below latency_p50_ms (900)",
        ),
        ([{k: v for k, v in MODEL.items() if k != "provider"}], "models[0].provider (model"),
    ],
)
def test_registry_errors_name_the_file_and_key_path(tmp_path, models, message):
    path = write(tmp_path, "models.yaml", {"models": models})
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    assert f"invalid model registry in {path}:" in str(caught.value)
    assert message in str(caught.value)


def test_inline_registry_errors_are_located_under_registry():
    with pytest.raises(ConfigError, match=r"registry\.models\[0\]\.context_window \(model 'm1'\)"):
        load_config({"registry": {"models": [{**MODEL, "context_window": 0}]}, "experts": {}})
    with pytest.raises(ConfigError, match="task_preferences.coding.preferred\\[0\\]: unknown"):
        load_config(
            {
                "registry": {
                    "models": [MODEL],
                    "task_preferences": {"coding": {"preferred": ["ghost"]}},
                },
                "experts": {"m1": {"kind": "echo"}},
            }
        )


def test_registry_settings_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="registry: give either path"):
        load_config({"registry": {"path": "a.yaml", "models": [MODEL]}, "experts": {}})
    with pytest.raises(ConfigError, match="registry: experts: the template needs a kind"):
        load_config({"registry": {"models": [MODEL], "experts": {"base_url": "x"}}})
    with pytest.raises(ConfigError, match="cannot read model registry .*missing.yaml"):
        load_config({"registry": str(tmp_path / "missing.yaml"), "experts": {}})
    with pytest.raises(ConfigError, match="experts.x.registry_id: unknown registry model 'm9'"):
        load_config(
            {
                "registry": {"models": [MODEL]},
                "experts": {"x": {"kind": "echo", "registry_id": "m9"}},
            }
        )
    monkeypatch.delenv("NO_SUCH_BASE_URL", raising=False)
    with pytest.raises(
        ConfigError, match="registry.experts.base_url: environment variable NO_SUCH_BASE_URL"
    ):
        load_config(
            {
                "registry": {
                    "models": [MODEL],
                    "experts": {"kind": "openai", "base_url": "${NO_SUCH_BASE_URL}"},
                }
            }
        )


def test_a_model_can_give_its_generated_expert_its_own_options(monkeypatch):
    monkeypatch.setenv("GATEWAY_URL", "http://127.0.0.1:4000/v1")
    moe = make_moe(
        {
            "registry": {
                "models": [MODEL, {**MODEL, "id": "m2", "expert": {"model": "acme/m2-latest"}}],
                "experts": {"kind": "openai", "base_url": "${GATEWAY_URL}"},
            }
        }
    )
    assert moe.experts["m1"].expert.upstream_model == "m1"
    assert moe.experts["m2"].expert.upstream_model == "acme/m2-latest"
    assert moe.experts["m2"].expert.options.base_url == "http://127.0.0.1:4000/v1"
