"""Metrics are on wherever the plugin is installed, and can be turned off or moved."""

from __future__ import annotations

import pytest

from moe_core import ConfigError, load_config
from moe_core.testing import make_moe
from tests.plugins.moe_metrics.conftest import chat, scrape, total

ECHO = {"experts": {"a": {"kind": "echo"}}}


def test_a_metrics_tracker_joins_the_configured_ones():
    assert list(make_moe(ECHO).trackers) == ["memory", "metrics"], "the core default stays"
    config = {
        **ECHO,
        "trackers": {"perf": {"kind": "performance"}},
        "tracking": {"store": "memory"},
    }
    assert list(make_moe(config).trackers) == ["perf", "metrics"]
    own = {**ECHO, "trackers": {"prom": {"kind": "metrics"}}}
    assert list(make_moe(own).trackers) == ["prom"]


def test_the_default_configuration_has_metrics(monkeypatch):
    monkeypatch.delenv("MOE_CONFIG", raising=False)
    assert "metrics" in load_config(None).trackers


def test_a_tracker_of_another_kind_named_metrics_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"trackers\.metrics: .*metrics\.enabled: false"):
        load_config({**ECHO, "trackers": {"metrics": {"kind": "memory"}}})


def test_an_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"metrics\.port: unknown key"):
        load_config({**ECHO, "metrics": {"port": 9090}})


async def test_disabled_metrics_serve_nothing(gateway):
    client = await gateway({**ECHO, "metrics": {"enabled": False}})
    assert (await client.get("/metrics")).status == 404
    response = await client.post("/v1/chat/completions", json=chat())
    assert "x-moe-overhead-ms" not in response.headers


async def test_the_path_can_move(gateway):
    client = await gateway({**ECHO, "metrics": {"path": "/-/prometheus"}})
    assert (await client.get("/metrics")).status == 404
    response = await client.get("/-/prometheus")
    assert response.status == 200
    assert "moe_models_loaded 1.0" in await response.text()


async def test_with_the_prompt_catch_all_enabled_a_scrape_starts_no_generation(gateway):
    client = await gateway({**ECHO, "server": {"frontends": {"pollinations": {"enabled": True}}}})
    answer = await client.get("/what is a star")
    assert answer.status == 200 and await answer.text() == "what is a star"  # the catch-all
    await scrape(client)
    samples = await scrape(client)
    assert total(samples, "moe_expert_call_duration_seconds_count") == 1, (
        "only the prompt was answered"
    )
    assert total(samples, "moe_requests_total", route="/metrics", status="200") == 1
