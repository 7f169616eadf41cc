"""Stores for tracker tests: memory, SQLite in a temporary directory, and the real Redis server
on 127.0.0.1:6379 under a unique key prefix per test (deleted afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from moe_tracking.redis import RedisStore
from moe_tracking.sqlite import SQLiteStore
from moe_tracking.store import MemoryStore, Store
from tests.conftest import REDIS_URL, redis_reachable

needs_redis = pytest.mark.skipif(
    not redis_reachable(), reason="Redis is not reachable on 127.0.0.1:6379 (CI starts it)"
)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Store]:
    """Each store kind in turn, started."""
    if request.param == "memory":
        made: Store = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "tracking.sqlite3")
    else:
        made = RedisStore(REDIS_URL, request.getfixturevalue("redis_prefix"))
    await made.start()
    yield made
    await made.close()


TRACKERS = {
    "performance": {"kind": "performance"},
    "breaker": {"kind": "circuit-breaker", "failure_threshold": 3, "reset_timeout_s": 0.3},
    "feedback": {"kind": "feedback"},
    "ab-tests": {"kind": "ab-tests"},
}


def tracked(experts: dict, *, tmp_path=None, store: str = "memory", **sections) -> dict:
    """A gateway config with ``echo`` experts, the tracking trackers and a store."""
    tracking = {"store": store}
    if store == "sqlite":
        tracking["path"] = str(tmp_path / "tracking.sqlite3")
    tracking |= sections.pop("tracking", {})
    return {
        "experts": experts,
        "trackers": sections.pop("trackers", TRACKERS),
        "tracking": tracking,
        **sections,
    }


def ask(text: str = "hello", **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_config(request: pytest.FixtureRequest, tmp_path) -> dict:
    """``tracked(...)`` keyword arguments for each store kind in turn."""
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        return {"store": "redis", "tracking": {"redis_url": REDIS_URL, "prefix": prefix}}
    return {"store": request.param, "tmp_path": tmp_path}
