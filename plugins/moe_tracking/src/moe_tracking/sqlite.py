"""The SQLite store: the embedded default, so feedback and counters survive a restart.

One connection in WAL mode, used from one worker thread (:mod:`moe_stores.sqlite`) so that the
event loop never waits on the disk and every operation is one transaction, serialised with the
others. A write is committed before its coroutine returns: a feedback acknowledged to a client
is in the file, and a ``kill -9`` of the gateway right after loses nothing (``synchronous=NORMAL``
in WAL mode keeps committed transactions across a process crash; ``FULL`` also across power loss,
at an fsync per write).

Most rows with a time to live are never read again (a request's record, a rate-limit window), so
a background task deletes expired ones every ``purge_every_s``, in short transactions of at most
``purge_batch`` rows so that other operations wait on it for milliseconds only. SQLite reuses
the pages those rows held, so under a steady load the file stops growing once the oldest rows
expire (it does not shrink: a one-off ``VACUUM`` does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from moe_stores.sqlite import SQLiteWorker
from moe_tracking.store import Hash, Store, apply_update

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (key TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at REAL);
CREATE INDEX IF NOT EXISTS hashes_by_expiry ON hashes (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS lists (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_stream ON records (stream, seq);
"""


class SQLiteStore(Store):
    """Tracker state in one SQLite file (one gateway instance at a time)."""

    def __init__(
        self,
        path: str | Path,
        prefix: str = "moe:",
        synchronous: str = "NORMAL",
        *,
        purge_every_s: float = 60.0,
        purge_batch: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(prefix)
        self.path = Path(path)
        self.synchronous = synchronous
        self.purge_every_s = purge_every_s
        self.purge_batch = purge_batch
        self.clock = clock
        self._sqlite = SQLiteWorker(
            self.path,
            schema=_SCHEMA,
            name="SQLite tracking store",
            thread_name="moe-sqlite",
            synchronous=synchronous,
        )
        self._purging: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._sqlite.started:
            return
        await self._sqlite.start()
        self._purging = asyncio.create_task(self._purge_forever())

    async def close(self) -> None:
        if not self._sqlite.started:
            return
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purging
            self._purging = None
        await self._sqlite.close()

    # Every _sync_* method runs on the worker thread, one at a time, each one transaction.

    def _read_hash(self, db: sqlite3.Connection, key: str) -> Hash:
        row = db.execute("SELECT body, expires_at FROM hashes WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self.clock()):
            return {}
        return json.loads(row[0])

    def _sync_update(self, key, incr, ema, set, ttl_s) -> Hash:
        db = self._sqlite.connection
        with _transaction(db):
            value = apply_update(self._read_hash(db, key), incr, ema, set)
            expires = None if ttl_s is None else self.clock() + ttl_s
            db.execute(
                "INSERT INTO hashes (key, body, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) "
                "DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at",
                (key, json.dumps(value), expires),
            )
        return value

    async def update(self, key, *, incr=None, ema=None, set=None, ttl_s=None) -> Hash:
        return await self._sqlite.run(self._sync_update, self.prefix + key, incr, ema, set, ttl_s)

    def _sync_get(self, key: str) -> Hash:
        return self._read_hash(self._sqlite.connection, key)

    async def get(self, key: str) -> Hash:
        return await self._sqlite.run(self._sync_get, self.prefix + key)

    def _sync_scan(self, prefix: str) -> dict[str, Hash]:
        full = self.prefix + prefix
        rows = self._sqlite.connection.execute(
            "SELECT key, body FROM hashes WHERE substr(key, 1, ?) = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (len(full), full, self.clock()),
        )
        return {key[len(self.prefix) :]: json.loads(body) for key, body in rows}

    async def scan(self, prefix: str) -> dict[str, Hash]:
        return await self._sqlite.run(self._sync_scan, prefix)

    def _sync_delete(self, key: str) -> None:
        db = self._sqlite.connection
        with _transaction(db):
            for table in ("hashes", "lists", "claims"):
                db.execute(f"DELETE FROM {table} WHERE key = ?", (key,))

    async def delete(self, key: str) -> None:
        await self._sqlite.run(self._sync_delete, self.prefix + key)

    def _sync_push(self, key: str, values: list[float], cap: int) -> None:
        db = self._sqlite.connection
        with _transaction(db):
            row = db.execute("SELECT body FROM lists WHERE key = ?", (key,)).fetchone()
            samples = [*values[::-1], *(json.loads(row[0]) if row else [])][:cap]
            db.execute(
                "INSERT INTO lists (key, body) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET body = excluded.body",
                (key, json.dumps(samples)),
            )

    async def push(self, key: str, values: Sequence[float], cap: int) -> None:
        await self._sqlite.run(self._sync_push, self.prefix + key, list(values), cap)

    def _sync_values(self, key: str) -> list[float]:
        db = self._sqlite.connection
        row = db.execute("SELECT body FROM lists WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else []

    async def values(self, key: str) -> list[float]:
        return await self._sqlite.run(self._sync_values, self.prefix + key)

    def _sync_claim(self, key: str, ttl_s: float) -> bool:
        db = self._sqlite.connection
        now = self.clock()
        with _transaction(db):
            row = db.execute("SELECT expires_at FROM claims WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] > now:
                return False
            db.execute(
                "INSERT INTO claims (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at",
                (key, now + ttl_s),
            )
            return True

    async def claim(self, key: str, ttl_s: float) -> bool:
        return await self._sqlite.run(self._sync_claim, self.prefix + key, ttl_s)

    def _sync_append(self, stream: str, record: Mapping[str, Any], keep: int | None) -> int:
        db = self._sqlite.connection
        with _transaction(db):
            cursor = db.execute(
                "INSERT INTO records (stream, body) VALUES (?, ?)", (stream, json.dumps(record))
            )
            sequence = int(cursor.lastrowid or 0)
            if keep is not None:
                db.execute(
                    "DELETE FROM records WHERE stream = ? AND seq <= (SELECT seq FROM records "
                    "WHERE stream = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (stream, stream, keep),
                )
        return sequence

    async def append(
        self, stream: str, record: Mapping[str, Any], *, keep: int | None = None
    ) -> int:
        return await self._sqlite.run(self._sync_append, self.prefix + stream, dict(record), keep)

    def _sync_records(self, stream: str, limit: int) -> list[dict[str, Any]]:
        rows = self._sqlite.connection.execute(
            "SELECT body FROM records WHERE stream = ? ORDER BY seq DESC LIMIT ?", (stream, limit)
        )
        return [json.loads(body) for (body,) in rows][::-1]

    async def records(self, stream: str, limit: int = 100) -> list[dict[str, Any]]:
        return await self._sqlite.run(self._sync_records, self.prefix + stream, limit)

    def _sync_purge(self, now: float) -> int:
        db = self._sqlite.connection
        with _transaction(db):
            freed = db.execute(
                "DELETE FROM hashes WHERE key IN "
                "(SELECT key FROM hashes WHERE expires_at <= ? LIMIT ?)",
                (now, self.purge_batch),
            ).rowcount
            # Few and short-lived (a breaker's probe, a feedback being recorded): purged whole.
            db.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))
        return freed

    async def purge(self) -> int:
        now = self.clock()
        freed = 0
        while True:
            # One short transaction per batch; what other coroutines asked for meanwhile
            # runs between two batches.
            batch = await self._sqlite.run(self._sync_purge, now)
            freed += batch
            if batch < self.purge_batch:
                return freed

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self.purge_every_s)
            try:
                await self.purge()
            except Exception as exc:  # a purge that fails must not stop the next ones
                log.warning("tracking.sqlite_purge_failed", path=str(self.path), error=str(exc))


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
