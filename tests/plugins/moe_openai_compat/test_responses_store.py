"""Stored responses stay bounded: by age, by count and by bytes, oldest first; in memory, and in
the SQLite file that the workers of one gateway share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from moe_openai_compat.options import OpenAIFrontendOptions
from moe_openai_compat.responses_store import (
    ResponseStore,
    SQLiteResponseStore,
    Store,
    open_store,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(size: int) -> dict:
    return {"response": {"id": "x"}, "messages": [{"role": "user", "content": "a" * size}]}


Make = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite"])
async def make(request, tmp_path: Path):
    """Build a started store of the parametrised kind; every one is closed afterwards."""
    made: list[Store] = []

    async def build(**bounds) -> Store:
        if request.param == "memory":
            store: Store = ResponseStore(**bounds)
        else:
            store = SQLiteResponseStore(tmp_path / f"responses-{len(made)}.sqlite3", **bounds)
        await store.start()
        made.append(store)
        return store

    yield build
    for store in made:
        await store.close()


async def test_records_expire_after_their_ttl(make):
    clock = Clock()
    store = await make(max_entries=10, max_bytes=10_000, ttl_s=60, clock=clock)
    await store.put("old", record(1))
    clock.now += 30
    await store.put("new", record(1))
    clock.now += 31
    assert await store.get("old") is None
    assert await store.get("new") == record(1)
    clock.now += 30
    assert await store.get("new") is None and await store.size() == (0, 0)


async def test_the_oldest_go_when_there_are_too_many(make):
    clock = Clock()
    store = await make(max_entries=2, max_bytes=10_000, ttl_s=60, clock=clock)
    for key in ("a", "b", "c"):
        clock.now += 1
        await store.put(key, record(1))
    assert await store.get("a") is None
    assert await store.get("b") is not None and await store.get("c") is not None


async def test_the_oldest_go_when_they_take_too_many_bytes(make):
    clock = Clock()
    store = await make(max_entries=100, max_bytes=2_000, ttl_s=60, clock=clock)
    for key in ("a", "b", "c"):
        clock.now += 1
        await store.put(key, record(800))
    count, size = await store.size()
    assert await store.get("a") is None and count == 2 and size <= 2_000
    # One record larger than the whole store is not kept, and evicts nothing.
    assert await store.put("huge", record(5_000)) is False
    assert (await store.size())[0] == 2


async def test_nothing_is_kept_with_max_entries_zero_and_delete_forgets(make):
    never = await make(max_entries=0, max_bytes=2_000, ttl_s=60)
    assert await never.put("a", record(1)) is False and await never.size() == (0, 0)
    store = await make(max_entries=5, max_bytes=2_000, ttl_s=60)
    await store.put("a", record(1))
    assert await store.delete("a") is True
    assert await store.delete("a") is False and await store.size() == (0, 0)


async def test_every_process_opening_the_file_sees_the_same_records(tmp_path: Path):
    bounds = {"max_entries": 10, "max_bytes": 10_000, "ttl_s": 60}
    one = SQLiteResponseStore(tmp_path / "shared.sqlite3", **bounds)
    other = SQLiteResponseStore(tmp_path / "shared.sqlite3", **bounds)
    await one.start()
    await other.start()
    try:
        await one.put("resp_1", record(3))
        assert await other.get("resp_1") == record(3)
        assert await other.delete("resp_1") is True
        assert await one.get("resp_1") is None
    finally:
        await one.close()
        await other.close()


def test_auto_shares_a_file_only_under_several_workers(monkeypatch, tmp_path: Path):
    options = OpenAIFrontendOptions(responses_store_path=str(tmp_path / "r.sqlite3"))
    monkeypatch.delenv("MOE_WORKERS", raising=False)
    assert isinstance(open_store(options), ResponseStore)
    monkeypatch.setenv("MOE_WORKERS", "2")
    assert isinstance(open_store(options), SQLiteResponseStore)
    memory = OpenAIFrontendOptions(responses_store="memory")
    assert isinstance(open_store(memory), ResponseStore)
