"""The store interface behaves the same on memory, SQLite and Redis, and its updates are atomic."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from moe_tracking.redis import RedisStore
from moe_tracking.sqlite import SQLiteStore
from moe_tracking.store import MemoryStore
from tests.plugins.moe_tracking.conftest import REDIS_URL


async def test_update_adds_averages_and_sets_in_one_step(store):
    first = await store.update(
        "perf:a", incr={"calls": 1}, ema={"latency": (100.0, 0.5, None)}, set={"state": "open"}
    )
    assert first == {"calls": 1.0, "latency": 100.0, "state": "open"}
    second = await store.update("perf:a", incr={"calls": 2}, ema={"latency": (200.0, 0.5, None)})
    assert second["calls"] == 3.0
    assert second["latency"] == pytest.approx(150.0)
    assert second["state"] == "open"
    assert await store.get("perf:a") == second
    assert await store.get("perf:missing") == {}


async def test_an_average_can_start_from_a_prior(store):
    weight = await store.update("w", ema={"score": (1.0, 0.1, 0.5)})
    assert weight["score"] == pytest.approx(0.55)


async def test_scan_finds_hashes_by_prefix_without_the_store_prefix(store):
    await store.update("breaker:openai", set={"state": "open"})
    await store.update("breaker:anthropic", set={"state": "closed"})
    await store.update("perf:x", incr={"n": 1})
    found = await store.scan("breaker:")
    assert set(found) == {"breaker:openai", "breaker:anthropic"}
    assert found["breaker:openai"]["state"] == "open"


async def test_hashes_expire(store):
    await store.update("window", incr={"n": 1}, ttl_s=0.2)
    assert await store.get("window") == {"n": 1.0}
    await asyncio.sleep(0.35)
    assert await store.get("window") == {}
    assert await store.scan("win") == {}


async def test_sample_lists_keep_the_newest(store):
    for value in range(6):
        await store.push("lat:a", [float(value)], cap=5)
    await store.push("lat:a", [6.0, 7.0], cap=5)
    assert await store.values("lat:a") == [7.0, 6.0, 5.0, 4.0, 3.0]


async def test_a_claim_is_exclusive_until_it_expires(store):
    assert await store.claim("probe", ttl_s=0.2)
    assert not await store.claim("probe", ttl_s=0.2)
    await asyncio.sleep(0.3)
    assert await store.claim("probe", ttl_s=0.2)
    await store.delete("probe")
    assert await store.claim("probe", ttl_s=0.2)


async def test_records_are_appended_and_read_back_in_order(store):
    for index in range(5):
        await store.append("log", {"i": index, "text": "é"})
    assert [r["i"] for r in await store.records("log", limit=3)] == [2, 3, 4]
    assert (await store.records("log"))[0] == {"i": 0, "text": "é"}


async def test_a_log_with_keep_holds_only_its_newest_records(store):
    """The feedback log is bounded (``log_max_records``): the store never grows forever."""
    sequences = [await store.append("bounded", {"i": index}, keep=3) for index in range(10)]
    assert [r["i"] for r in await store.records("bounded", limit=100)] == [7, 8, 9]
    assert sequences == sorted(set(sequences))  # still a new number for every record


async def test_concurrent_updates_are_never_lost(store):
    await asyncio.gather(
        *(store.update("c", incr={"n": 1}, ema={"e": (1.0, 0.5, 0.0)}) for _ in range(200))
    )
    assert (await store.get("c"))["n"] == 200.0


async def test_sqlite_keeps_everything_across_a_restart(tmp_path):
    path = tmp_path / "t.sqlite3"
    first = SQLiteStore(path)
    await first.start()
    await first.update("weight:a:*", incr={"feedback": 2}, set={"expert": "a"})
    await first.append("feedback-log", {"request_id": "r1"})
    await first.close()
    second = SQLiteStore(path)
    await second.start()
    assert await second.get("weight:a:*") == {"feedback": 2.0, "expert": "a"}
    assert await second.records("feedback-log") == [{"request_id": "r1"}]
    await second.close()


async def test_two_redis_clients_share_counters_atomically(redis_prefix):
    one, two = RedisStore(REDIS_URL, redis_prefix), RedisStore(REDIS_URL, redis_prefix)
    await one.start()
    await two.start()
    try:
        await asyncio.gather(
            *(store.update("shared", incr={"n": 1}) for store in (one, two) for _ in range(150))
        )
        assert (await one.get("shared"))["n"] == 300.0
        claims = await asyncio.gather(*(s.claim("probe", 5) for s in (one, two, one, two)))
        assert sorted(claims) == [False, False, False, True]
    finally:
        await one.close()
        await two.close()


async def test_an_unreachable_redis_is_a_clear_error():
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(ConnectionError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0"):
        await store.start()


class Clock:
    """A clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def rows(path, table="hashes") -> int:
    """What the SQLite file holds, read the way an operator would, beside the running store."""
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def pages(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA page_count").fetchone()[0]


async def test_sqlite_deletes_expired_rows_not_just_hides_them(tmp_path):
    path, clock = tmp_path / "t.sqlite3", Clock()
    store = SQLiteStore(path, clock=clock, purge_batch=100)
    await store.start()
    try:
        for index in range(1000):
            await store.update(f"request:{index}", set={"expert": "a"}, ttl_s=60)
        await store.update("request:renewed", set={"expert": "a"}, ttl_s=60)
        await store.update("weight:a:*", incr={"feedback": 1})
        await store.claim("probe", ttl_s=1)
        clock.now += 30
        await store.update("request:renewed", set={"expert": "b"}, ttl_s=60)
        clock.now += 31
        assert await store.purge() == 1000  # in ten batches of 100
        assert rows(path) == 2 and rows(path, "claims") == 0
        assert await store.get("request:renewed") == {"expert": "b"}
        assert await store.get("weight:a:*") == {"feedback": 1.0}
    finally:
        await store.close()


async def test_sqlite_stops_growing_under_a_steady_stream_of_expiring_writes(tmp_path):
    # A request's record lives two "minutes" here; every minute brings 500 new ones.
    path, clock = tmp_path / "t.sqlite3", Clock()
    store = SQLiteStore(path, clock=clock)
    await store.start()
    try:
        sizes = []
        for minute in range(30):
            for index in range(500):
                await store.update(f"request:{minute}:{index}", set={"expert": "a"}, ttl_s=120)
            clock.now += 60
            await store.purge()
            assert rows(path) <= 2 * 500
            sizes.append(pages(path))
        one_minute = sizes[1] - sizes[0]
        # Freed pages are reused: the last 20 minutes grew the file by less than one did at first.
        assert sizes[-1] - sizes[9] < one_minute
    finally:
        await store.close()


async def test_sqlite_purges_by_itself(tmp_path):
    path = tmp_path / "t.sqlite3"
    store = SQLiteStore(path, purge_every_s=0.05)
    await store.start()
    try:
        for index in range(100):
            await store.update(f"ratelimit:key:{index}", incr={"requests": 1}, ttl_s=0.01)
        await asyncio.sleep(0.3)
        assert rows(path) == 0
    finally:
        await store.close()


async def test_memory_store_frees_expired_hashes_as_it_writes():
    clock = Clock()
    store = MemoryStore(clock=clock)
    for minute in range(20):
        for index in range(500):
            await store.update(f"request:{minute}:{index}", set={"expert": "a"}, ttl_s=120)
        clock.now += 60
    await store.update("weight:a:*", incr={"feedback": 1})
    clock.now += 3600
    # Only what the last writes could not yet free was still held: two minutes' worth, not 20.
    assert await store.purge() <= 2 * 500
    assert await store.get("weight:a:*") == {"feedback": 1.0}
