"""Model registry parity: every listed model becomes an expert with the listing's capabilities."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from moe_pollinations.registry import experts_config, snapshot
from moe_pollinations.testing import snapshot_raw
from tests.conftest import run_moe


def test_every_snapshot_model_becomes_an_expert_with_its_capabilities(tmp_path):
    listing = snapshot()
    raw = snapshot_raw()
    moe = make_moe({"experts": experts_config(listing, cache_dir=str(tmp_path)), "trackers": {}})
    cards = moe.experts.cards()
    assert len(raw["text"]) == 26 and len(raw["image"]) == 4
    assert set(cards) == {m["name"] for m in raw["text"]} | set(raw["image"])
    for model in raw["text"]:
        card = cards[model["name"]]
        assert card.provider == "pollinations"
        assert card.modalities_in == model["input_modalities"]
        assert card.modalities_out == model["output_modalities"]
        for flag in ("tools", "vision", "reasoning"):
            assert (flag in card.capabilities) == bool(model.get(flag)), (model["name"], flag)
        assert f"tier:{model['tier']}" in card.capabilities
        voices = {c.removeprefix("voice:") for c in card.capabilities if c.startswith("voice:")}
        assert voices == set(model.get("voices", []))
        assert card.supports_streaming
    for name in raw["image"]:
        assert cards[name].modalities_out == ["image"]
        assert "image-generation" in cards[name].capabilities
        assert not cards[name].supports_streaming
    assert "image-edit" in cards["kontext"].capabilities
    assert "image-edit" not in cards["flux"].capabilities
    assert "text-rendering" in cards["gptimage"].capabilities
    assert cards["gptimage"].latency_p50_ms > 10 * cards["flux"].latency_p50_ms


def test_timeouts_suit_each_model(tmp_path):
    moe = make_moe({"experts": experts_config(snapshot(), cache_dir=str(tmp_path))})
    timeout = {name: slot.expert.timeout_s for name, slot in moe.experts.items()}
    assert timeout["flux"] <= 60 < timeout["gptimage"] <= 600
    assert all(0 < value < float("inf") for value in timeout.values())


def test_an_unknown_model_is_a_startup_error_naming_the_choices(tmp_path):
    config = {
        "experts": {"x": {"kind": "pollinations", "model": "nope", "cache_dir": str(tmp_path)}}
    }
    with pytest.raises(ConfigError, match="no model 'nope'.*openai-fast.*pollinations sync"):
        make_moe(config)


def test_a_voice_the_model_lacks_is_a_startup_error(tmp_path):
    config = {
        "experts": {
            "tts": {"kind": "pollinations", "model": "openai-audio", "voice": "bob"},
        }
    }
    with pytest.raises(ConfigError, match="voice.*'bob'.*nova"):
        make_moe(config)


def test_the_cached_listing_wins_over_the_snapshot(tmp_path):
    raw = snapshot_raw()
    raw["text"].append({**raw["text"][0], "name": "brand-new", "reasoning": False})
    (tmp_path / "models.json").write_text(json.dumps({"fetched_at": time.time(), **raw}), "utf-8")
    config = {
        "experts": {
            "new": {"kind": "pollinations", "model": "brand-new", "cache_dir": str(tmp_path)}
        }
    }
    moe = make_moe(config)
    assert "reasoning" not in moe.experts["new"].card.capabilities


def test_without_cache_dir_the_listing_is_read_from_moe_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_CACHE_DIR", str(tmp_path / "moe-cache"))
    raw = snapshot_raw()
    raw["text"].append({**raw["text"][0], "name": "brand-new"})
    cached = tmp_path / "moe-cache" / "pollinations" / "models.json"
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps({"fetched_at": time.time(), **raw}), "utf-8")
    moe = make_moe({"experts": {"new": {"kind": "pollinations", "model": "brand-new"}}})
    assert "new" in moe.experts.cards()


async def test_a_stale_cache_is_refreshed_on_start(fake, tmp_path):
    fake.text_models = [*fake.text_models, {**fake.text_models[0], "name": "fresh-model"}]
    stale = {"fetched_at": time.time() - 10 * 86400, **snapshot_raw()}
    (tmp_path / "models.json").write_text(json.dumps(stale), "utf-8")
    options = {**fake.options(), "cache_dir": str(tmp_path), "listing_ttl_s": 3600}
    moe = make_moe({"experts": {"openai": {"kind": "pollinations", **options}}, "trackers": {}})
    async with moe:
        assert moe.experts["openai"].state == "ready"  # not kept waiting by the refresh
        for _ in range(200):
            cached = json.loads((tmp_path / "models.json").read_text("utf-8"))
            if cached["fetched_at"] > stale["fetched_at"]:
                break
            await asyncio.sleep(0.02)
    assert "fresh-model" in [m["name"] for m in cached["text"]]
    assert cached["fetched_at"] > stale["fetched_at"]


def _serve_fake_in_thread():
    """The fake in its own thread, so a separate `moe` process can reach it."""
    import asyncio
    import threading

    from moe_pollinations.testing import FakePollinations

    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        fake = FakePollinations()
        loop.run_until_complete(fake.start())
        holder["fake"] = fake
        ready.set()
        loop.run_forever()
        loop.run_until_complete(fake.close())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    return holder, thread


def test_moe_pollinations_sync_writes_the_cache_and_prints_config(tmp_path):
    holder, thread = _serve_fake_in_thread()
    fake = holder["fake"]
    try:
        result = run_moe(
            "pollinations",
            "sync",
            "--text-base-url",
            fake.text_url,
            "--image-base-url",
            fake.image_url,
            "--cache-dir",
            str(tmp_path),
            "--print-config",
        )
    finally:
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)
        thread.join(10)
    assert result.returncode == 0, result.stderr
    assert "synced 30 models (26 text, 4 image)" in result.stderr
    import yaml

    experts = yaml.safe_load(result.stdout)["experts"]
    assert len(experts) == 30
    assert experts["gptimage"] == {
        "kind": "pollinations",
        "text_base_url": fake.text_url,
        "image_base_url": fake.image_url,
        "cache_dir": str(tmp_path),
    }
    assert json.loads((tmp_path / "models.json").read_text("utf-8"))["image"][-1] == "gptimage"


def test_moe_pollinations_sync_without_cache_dir_writes_into_moe_cache_dir(tmp_path):
    holder, thread = _serve_fake_in_thread()
    fake = holder["fake"]
    try:
        result = run_moe(
            "pollinations",
            "sync",
            "--text-base-url",
            fake.text_url,
            "--image-base-url",
            fake.image_url,
            env={"MOE_CACHE_DIR": str(tmp_path / "moe-cache"), "XDG_CACHE_HOME": str(tmp_path)},
        )
    finally:
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)
        thread.join(10)
    assert result.returncode == 0, result.stderr
    cached = tmp_path / "moe-cache" / "pollinations" / "models.json"
    assert json.loads(cached.read_text("utf-8"))["image"][-1] == "gptimage"
    assert not (tmp_path / "moe").exists()  # not the XDG cache


def test_moe_pollinations_sync_unreachable_is_a_clear_error(tmp_path):
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = run_moe(
        "pollinations",
        "sync",
        "--text-base-url",
        url,
        "--image-base-url",
        url,
        "--cache-dir",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "cannot fetch the Pollinations model listing" in result.stderr
    assert "30 models (26 text, 4 image) from bundled snapshot" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_config_has_every_model_and_the_gate():
    from pathlib import Path

    from moe_core import MoE

    example = Path(__file__).parents[3] / "plugins/moe_pollinations/examples/pollinations.yaml"
    moe = MoE.from_config(example)
    assert set(moe.experts) == set(snapshot().names())
    assert moe.gate.name == "task-classifier"
