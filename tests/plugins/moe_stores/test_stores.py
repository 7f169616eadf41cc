"""The store plumbing moe-cache and moe-tracking share: a SQLite connection in WAL mode on one
worker thread, and a Redis client on a bounded pool that answered before it is handed out."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading

import pytest

from moe_stores.redis import connect, safe_url
from moe_stores.sqlite import SQLiteWorker
from tests.conftest import REDIS_URL, free_port

SCHEMA = "CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, value TEXT NOT NULL);"


def worker(tmp_path, **options) -> SQLiteWorker:
    return SQLiteWorker(
        tmp_path / "deep" / "store.sqlite3",
        schema=SCHEMA,
        name="SQLite test store",
        thread_name="moe-test-sqlite",
        **options,
    )


async def test_sqlite_runs_every_function_on_one_thread_with_wal_on(tmp_path):
    sqlite = worker(tmp_path, synchronous="full")
    await sqlite.start()
    try:
        assert sqlite.started and sqlite.path.exists()  # its folder was created

        def pragma(name: str) -> str:
            return str(sqlite.connection.execute(f"PRAGMA {name}").fetchone()[0])

        assert await sqlite.run(pragma, "journal_mode") == "wal"
        assert await sqlite.run(pragma, "synchronous") == "2"  # FULL
        assert await sqlite.run(pragma, "busy_timeout") == "5000"

        def put(key: str, value: str) -> int:
            sqlite.connection.execute("INSERT INTO items VALUES (?, ?)", (key, value))
            return threading.get_ident()

        threads = {await sqlite.run(put, f"k{i}", "v") for i in range(5)}
        assert len(threads) == 1 and threading.get_ident() not in threads
        name = await sqlite.run(lambda: threading.current_thread().name)
        assert name.startswith("moe-test-sqlite")
    finally:
        await sqlite.close()
    # Committed as it went (autocommit): another connection sees every row.
    with sqlite3.connect(sqlite.path) as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (5,)


async def test_parts_starting_a_shared_store_together_open_it_once(tmp_path):
    """Two parts that share a store may start it at once: one connection and one thread, not
    two with one of them leaked."""
    before = {thread.name for thread in threading.enumerate()}
    sqlite = worker(tmp_path)
    await asyncio.gather(*(sqlite.start() for _ in range(4)))
    try:
        threads = [t for t in threading.enumerate() if t.name.startswith("moe-test-sqlite")]
        assert len([t for t in threads if t.name not in before]) == 1
    finally:
        await sqlite.close()


async def test_sqlite_is_a_clear_error_before_start_and_after_close(tmp_path):
    sqlite = worker(tmp_path)
    with pytest.raises(RuntimeError, match="the SQLite test store is not started"):
        await sqlite.run(lambda: None)
    with pytest.raises(RuntimeError, match="the SQLite test store is not started"):
        sqlite.connection  # noqa: B018 - reading it is what raises
    await sqlite.start()
    await sqlite.start()  # a second start keeps the first connection
    await sqlite.close()
    await sqlite.close()
    assert not sqlite.started
    with pytest.raises(RuntimeError, match="the SQLite test store is closed"):
        await sqlite.run(lambda: None)
    with pytest.raises(RuntimeError, match="the SQLite test store is closed"):
        sqlite.connection  # noqa: B018 - reading it is what raises


async def test_sqlite_reopens_the_same_file_after_close(tmp_path):
    sqlite = worker(tmp_path)
    await sqlite.start()
    await sqlite.run(lambda: sqlite.connection.execute("INSERT INTO items VALUES ('a', 'b')"))
    await sqlite.close()
    await sqlite.start()
    try:
        row = await sqlite.run(lambda: sqlite.connection.execute("SELECT * FROM items").fetchone())
        assert row == ("a", "b")
    finally:
        await sqlite.close()


def test_sqlite_refuses_an_unknown_synchronous_setting(tmp_path):
    with pytest.raises(ValueError, match="synchronous must be one of"):
        worker(tmp_path, synchronous="NORMAL; DROP TABLE items")


def test_safe_url_masks_the_password_only():
    assert safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert safe_url("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert safe_url("rediss://user:secret@host/1") == "rediss://user:***@host/1"


async def test_connect_to_nobody_names_the_url_without_its_password():
    pytest.importorskip("redis")
    url = f"redis://user:secret@127.0.0.1:{free_port()}/0"
    masked = re.escape(url.replace(":secret@", ":***@"))
    with pytest.raises(ConnectionError, match=f"^cannot reach Redis at {masked}: ") as caught:
        await connect(url, max_connections=2)
    assert "secret" not in str(caught.value)


async def test_connect_hands_out_a_bounded_client_that_answers(redis_prefix):
    raw = await connect(REDIS_URL, max_connections=3)
    text = await connect(REDIS_URL, max_connections=4, decode_responses=True)
    try:
        assert raw.connection_pool.max_connections == 3
        await raw.set(redis_prefix + "key", "value")
        assert await raw.get(redis_prefix + "key") == b"value"
        assert await text.get(redis_prefix + "key") == "value"
    finally:
        await raw.aclose(close_connection_pool=True)
        await text.aclose(close_connection_pool=True)
