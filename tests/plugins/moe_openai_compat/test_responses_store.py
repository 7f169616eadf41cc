"""Stored responses stay bounded: by age, by count and by bytes, oldest first."""

from __future__ import annotations

from moe_openai_compat.responses_store import ResponseStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(size: int) -> dict:
    return {"response": {"id": "x"}, "messages": [{"role": "user", "content": "a" * size}]}


async def test_records_expire_after_their_ttl():
    clock = Clock()
    store = ResponseStore(max_entries=10, max_bytes=10_000, ttl_s=60, clock=clock)
    await store.put("old", record(1))
    clock.now += 30
    await store.put("new", record(1))
    clock.now += 31
    assert await store.get("old") is None
    assert await store.get("new") == record(1)
    clock.now += 30
    assert await store.get("new") is None and len(store) == 0 and store.bytes == 0


async def test_the_oldest_go_when_there_are_too_many():
    store = ResponseStore(max_entries=2, max_bytes=10_000, ttl_s=60)
    for key in ("a", "b", "c"):
        await store.put(key, record(1))
    assert await store.get("a") is None
    assert await store.get("b") is not None and await store.get("c") is not None


async def test_the_oldest_go_when_they_take_too_many_bytes():
    store = ResponseStore(max_entries=100, max_bytes=2_000, ttl_s=60)
    for key in ("a", "b", "c"):
        await store.put(key, record(800))
    assert await store.get("a") is None and len(store) == 2
    assert store.bytes <= 2_000
    # One record larger than the whole store is not kept, and evicts nothing.
    assert await store.put("huge", record(5_000)) is False
    assert len(store) == 2


async def test_nothing_is_kept_with_max_entries_zero_and_delete_forgets():
    never = ResponseStore(max_entries=0, max_bytes=2_000, ttl_s=60)
    assert await never.put("a", record(1)) is False and len(never) == 0
    store = ResponseStore(max_entries=5, max_bytes=2_000, ttl_s=60)
    await store.put("a", record(1))
    assert await store.delete("a") is True
    assert await store.delete("a") is False and store.bytes == 0
