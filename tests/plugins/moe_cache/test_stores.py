"""Each store over HTTP: answers expire, the least recently used go beyond the bound, SQLite
keeps them across a restart, Redis shares them between gateways, and a store that fails makes
misses, never failed requests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from moe_core import MOE_KEY, ConfigError
from moe_core.testing import make_moe
from tests.conftest import REDIS_URL
from tests.plugins.moe_cache.conftest import answer, ask, cached, calls, chat, notes


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path) -> dict[str, Any]:
    """The cache options selecting each store in turn (Redis under a prefix of its own)."""
    if request.param == "memory":
        return {"store": "memory"}
    if request.param == "sqlite":
        return {"store": "sqlite", "path": str(tmp_path / "cache.sqlite3")}
    return {
        "store": "redis",
        "redis_url": REDIS_URL,
        "prefix": request.getfixturevalue("redis_prefix"),
    }


def hit(body: dict[str, Any]) -> bool:
    return any("answered from the cache" in note for note in notes(body))


async def test_answers_expire_after_their_time_to_live(gateway, store):
    client = await gateway(cached(ttl_s=0.3, **store))
    assert not hit(await chat(client, ask("tick")))
    assert hit(await chat(client, ask("tick")))
    await asyncio.sleep(0.45)
    assert not hit(await chat(client, ask("tick")))
    assert calls(client) == 2


async def test_the_least_recently_used_answer_goes_beyond_the_bound(gateway, store):
    client = await gateway(cached(max_entries=2, **store))
    await chat(client, ask("one"))
    await chat(client, ask("two"))
    assert hit(await chat(client, ask("one")))  # "one" is now the most recently used
    await chat(client, ask("three"))  # over the bound: "two" goes
    assert calls(client) == 3
    assert hit(await chat(client, ask("one")))
    assert hit(await chat(client, ask("three")))
    assert not hit(await chat(client, ask("two")))
    assert calls(client) == 4
    tracker = client.server.app[MOE_KEY].trackers["cache"]
    assert await tracker.store.size() <= 2


async def test_answers_larger_than_the_bound_are_not_kept(gateway):
    client = await gateway(cached(max_entry_bytes=200))
    await chat(client, ask("short"))
    assert hit(await chat(client, ask("short")))
    long = " ".join(["word"] * 100)
    await chat(client, ask(long))
    assert not hit(await chat(client, ask(long)))


async def test_sqlite_serves_what_it_cached_after_a_restart(gateway, tmp_path):
    config = cached(store="sqlite", path=str(tmp_path / "kept.sqlite3"))
    first = await gateway(config)
    await chat(first, ask("remember me"))
    await first.close()
    second = await gateway(config)
    again = await chat(second, ask("remember me"))
    assert hit(again) and answer(again) == "remember me"
    assert calls(second) == 0


async def test_redis_shares_answers_between_gateways(redis_prefix, gateway):
    config = cached(store="redis", redis_url=REDIS_URL, prefix=redis_prefix)
    one, two = await gateway(config), await gateway(config)
    await chat(one, ask("shared"))
    assert hit(await chat(two, ask("shared")))
    assert calls(one) == 1 and calls(two) == 0


async def test_a_store_that_fails_means_misses_not_failed_requests(gateway, tmp_path):
    client = await gateway(cached(store="sqlite", path=str(tmp_path / "c.sqlite3")))
    await chat(client, ask("fine"))
    await client.server.app[MOE_KEY].trackers["cache"].store.close()  # the disk is gone
    for _ in range(2):
        assert answer(await chat(client, ask("fine"))) == "fine"
    assert calls(client) == 3
    stats = (await (await client.get("/-/stats")).json())["cache"]
    assert stats["experts"]["a"]["error"] >= 2


async def test_an_unreachable_redis_stops_startup_naming_the_key():
    moe = make_moe(cached(store="redis", redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(ConfigError, match=r"trackers\.cache\.store: cannot open the redis cache"):
        await moe.start()
