"""Configuration: strict validation whose errors name the exact key path."""

from __future__ import annotations

import pytest

from moe_core import ConfigError, PluginError, load_config
from moe_core.testing import make_moe


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"experts": {"a": {"kind": "echo"}}, "sever": {}}, "sever: unknown section"),
        ({"experts": {"a": {"kind": "echo"}}, "server": {"port": "eighty"}}, "server.port:"),
        ({"experts": {}}, "experts: Dictionary should have at least 1 item"),
        ({"experts": {"a": {"prefix": "x"}}}, "experts.a.kind: Field required"),
        (
            {"experts": {"a": {"kind": "echo", "fallbacks": ["zz"]}}},
            "experts.a.fallbacks: unknown expert 'zz'",
        ),
        (
            {"experts": {"a": {"kind": "echo", "card": {"qualty": 0.5}}}},
            "experts.a.card.qualty: unknown key",
        ),
        (
            {"experts": {"a": {"kind": "echo", "card": {"quality": 7}}}},
            "experts.a.card.quality: Input should be less than or equal to 1",
        ),
        ({"experts": {"auto": {"kind": "echo"}}}, "'auto' is reserved"),
    ],
)
def test_shape_errors_name_the_key(config, message):
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        (
            {"experts": {"a": {"kind": "echo", "delay_s": "soon"}}},
            ConfigError,
            "experts.a.delay_s: Input should be a valid number",
        ),
        (
            {"experts": {"a": {"kind": "echo", "prefx": ">"}}},
            ConfigError,
            "experts.a.prefx: unknown key",
        ),
        (
            {"experts": {"a": {"kind": "echoo"}}},
            PluginError,
            "unknown expert kind 'echoo'; installed expert kinds: anthropic, byt5, echo,",
        ),
        (
            {"experts": {"a": {"kind": "echo"}}, "gate": {"kind": "fixed", "expert": "b"}},
            ConfigError,
            "gate.expert: unknown expert 'b'",
        ),
        (
            {"experts": {"a": {"kind": "echo"}}, "gate": {"kind": "fixed", "fallback": ["a"]}},
            ConfigError,
            "gate.fallback: unknown key",
        ),
        (
            {
                "experts": {"a": {"kind": "echo"}},
                "trackers": {"t": {"kind": "memory", "window": 1}},
            },
            ConfigError,
            "trackers.t.window: Input should be greater than or equal to 10",
        ),
        (
            {"experts": {"a": {"kind": "echo"}}, "combiner": {"kind": "vote"}},
            PluginError,
            "unknown combiner kind 'vote'",
        ),
    ],
)
def test_kind_options_are_checked_against_the_kind(config, error, message):
    with pytest.raises(error) as caught:
        make_moe(config)
    assert message in str(caught.value)


def test_yaml_file_errors_name_the_file(tmp_path):
    path = tmp_path / "moe.yaml"
    path.write_text("experts:\n  a: {kind: echo\n")
    with pytest.raises(ConfigError, match="moe.yaml is not valid YAML"):
        load_config(path)
    path.write_text("experts:\n  a:\n    kind: echo\n    delay_s: soon\n")
    with pytest.raises(ConfigError, match=r"invalid configuration in .*moe.yaml") as caught:
        make_moe(load_config(path))
    assert "experts.a.delay_s" in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_moe_config_environment_variable_is_used(tmp_path, monkeypatch):
    path = tmp_path / "env.yaml"
    path.write_text("experts:\n  from_env: {kind: echo}\n")
    monkeypatch.setenv("MOE_CONFIG", str(path))
    assert list(load_config(None).experts) == ["from_env"]


def test_the_embedded_default_needs_no_file(monkeypatch):
    monkeypatch.delenv("MOE_CONFIG", raising=False)
    config = load_config(None)
    assert config.source == "<default configuration of the installed plugins>"
    # The installed plugins' fragments, merged: trackers from the core and moe-tracking.
    assert list(config.trackers) == [
        "memory",
        "performance",
        "breaker",
        "feedback",
        "ab-tests",
        "rate-limit",
        "metrics",
    ]
    assert config.section("tracking").store == "sqlite"
    chat = {"general", "healthcare", "finance", "cybersecurity"}
    assert set(config.experts) == {*chat, "all-minilm-l6-v2", "image-facts"}
    assert {config.experts[name].kind for name in chat} == {"hf-causal-lm"}
    # The embedder answers /v1/embeddings and image-facts describes images: gates never pick them.
    assert config.experts["all-minilm-l6-v2"].kind == "sentence-embedding"
    assert list(config.preparers) == ["images"]
    assert config.gate.kind == "embedding"
    assert config.server.port == 8000 and config.server.host == "127.0.0.1"


def test_secrets_come_from_the_environment_named_in_the_config(monkeypatch):
    config = load_config(
        {"experts": {"a": {"kind": "echo"}}, "server": {"api_keys_env": "TEST_MOE_KEYS"}}
    )
    monkeypatch.delenv("TEST_MOE_KEYS", raising=False)
    with pytest.raises(ConfigError, match="TEST_MOE_KEYS is not set"):
        config.server.api_keys()
    monkeypatch.setenv("TEST_MOE_KEYS", "k1, k2")
    assert config.server.api_keys() == ["k1", "k2"]
