"""The ``tracking`` section: which store, where, and clear errors when it cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from moe_core.config import load_config
from moe_core.errors import ConfigError
from moe_core.testing import make_moe
from moe_tracking.base import store_of
from moe_tracking.redis import RedisStore
from moe_tracking.sqlite import SQLiteStore
from moe_tracking.store import MemoryStore
from moe_tracking.stores import data_dir, open_store
from tests.conftest import free_port, run_moe
from tests.plugins.moe_tracking.conftest import ask, tracked


def test_the_embedded_default_keeps_tracker_state_in_sqlite_under_the_data_dir(monkeypatch):
    config = load_config()
    assert config.section("tracking").store == "sqlite"
    assert {"performance", "circuit-breaker", "feedback", "ab-tests", "rate-limit"} <= {
        tracker.kind for tracker in config.trackers.values()
    }
    monkeypatch.setenv("MOE_DATA_DIR", "/srv/moe-data")
    store = open_store(config.section("tracking"))
    assert isinstance(store, SQLiteStore)
    assert store.path == Path("/srv/moe-data/tracking.sqlite3")


def test_data_dir_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MOE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert data_dir() == tmp_path / "moe"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".local" / "share" / "moe"


def test_store_kinds_and_the_redis_url_from_the_environment(monkeypatch):
    base = {"experts": {"a": {"kind": "echo"}}}
    assert isinstance(
        open_store(load_config({**base, "tracking": {"store": "memory"}}).section("tracking")),
        MemoryStore,
    )
    monkeypatch.setenv("MY_REDIS", "redis://10.0.0.5:6380/2")
    tracking = {"store": "redis", "redis_url_env": "MY_REDIS", "prefix": "prod:"}
    store = open_store(load_config({**base, "tracking": tracking}).section("tracking"))
    assert isinstance(store, RedisStore)
    assert (store.url, store.prefix) == ("redis://10.0.0.5:6380/2", "prod:")


def test_a_bad_tracking_section_names_the_key():
    with pytest.raises(ConfigError, match=r"tracking\.store: Input should be 'memory', 'sqlite'"):
        load_config({"experts": {"a": {"kind": "echo"}}, "tracking": {"store": "mongo"}})
    with pytest.raises(ConfigError, match=r"tracking\.refresh: unknown key"):
        load_config({"experts": {"a": {"kind": "echo"}}, "tracking": {"refresh": 1}})


async def test_no_store_is_opened_when_no_tracker_keeps_state(tmp_path):
    config = {"experts": {"a": {"kind": "echo"}}, "tracking": {"path": str(tmp_path / "x.db")}}
    async with make_moe(config) as moe:
        await moe.complete(ask())
        assert store_of(moe) is None
    assert not (tmp_path / "x.db").exists()


async def test_trackers_share_the_one_configured_store(tmp_path):
    moe = make_moe(tracked({"a": {"kind": "echo"}}, tmp_path=tmp_path, store="sqlite"))
    # Every tracker that keeps state (the metrics tracker keeps none in the store).
    stores = {id(tracker.store) for tracker in moe.trackers.values() if hasattr(tracker, "store")}
    assert stores == {id(store_of(moe))}
    async with moe:
        await moe.complete(ask())
    assert (tmp_path / "tracking.sqlite3").exists()


def test_serve_says_when_redis_cannot_be_reached_without_printing_its_password(tmp_path):
    config = tmp_path / "moe.yaml"
    config.write_text(
        "experts: {a: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}}\n"
        "trackers: {breaker: {kind: circuit-breaker}}\n"
        "tracking: {store: redis, redis_url: 'redis://:hunter2@127.0.0.1:1/0'}\n"
    )
    result = run_moe("serve", "--config", str(config), "--port", str(free_port()), timeout=60)
    assert result.returncode == 2
    assert "tracking.store: cannot start: cannot reach Redis" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
