"""Answers in one SQLite file, so that a restarted gateway still serves what it cached.

One connection in WAL mode on one worker thread (:mod:`moe_stores.sqlite`): the event loop never
waits on the disk, and each operation is one short transaction. Expiry times are wall-clock seconds
(they must survive a restart, which a monotonic clock does not). A hit is a read only: when an entry
was last used is noted in memory and written with the next write (or at close), since a commit costs
ten times the read. Eviction happens only in a write, after those notes are in: when the write takes
the table past ``max_entries`` rows, the least recently used rows go (expired ones among the first,
since nothing can hit them) in the same transaction, so the row count never exceeds the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from moe_stores.sqlite import SQLiteWorker

MAX_UNWRITTEN_USES = 1024
"""Hits noted in memory at most before they are written on their own."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL, used_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_use ON answers (used_at);
"""


class SQLiteStore:
    """A bounded, expiring key-value table in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        # A cache may lose its last writes on power loss: no fsync per answer.
        self._sqlite = SQLiteWorker(
            path,
            schema=_SCHEMA,
            name="SQLite cache store",
            thread_name="moe-cache-sqlite",
            synchronous="NORMAL",
        )
        # Hits not yet written: key -> when. Touched only on the worker thread.
        self._used: dict[str, float] = {}

    async def start(self) -> None:
        await self._sqlite.start()

    async def close(self) -> None:
        if not self._sqlite.started:
            return
        await self._sqlite.run(self._write_uses)
        await self._sqlite.close()

    async def get(self, key: str) -> bytes | None:
        return await self._sqlite.run(self._get, key)

    def _get(self, key: str) -> bytes | None:
        db, now = self._sqlite.connection, self.clock()
        row = db.execute(
            "SELECT value FROM answers WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        if row is None:
            return None
        self._used[key] = now
        if len(self._used) >= MAX_UNWRITTEN_USES:
            self._write_uses()
        return bytes(row[0])

    def _write_uses(self) -> None:
        if not self._used:
            return
        db, used, self._used = self._sqlite.connection, self._used, {}
        rows = [(at, key) for key, at in used.items()]
        if db.in_transaction:
            db.executemany("UPDATE answers SET used_at = ? WHERE key = ?", rows)
            return
        with db:  # one commit for all of them, not one per row
            db.execute("BEGIN")
            db.executemany("UPDATE answers SET used_at = ? WHERE key = ?", rows)

    async def put(self, key: str, value: bytes) -> None:
        await self._sqlite.run(self._put, key, value)

    def _put(self, key: str, value: bytes) -> None:
        db, now = self._sqlite.connection, self.clock()
        with db:  # one transaction: the row, the hits since the last write, the eviction
            db.execute("BEGIN IMMEDIATE")
            self._write_uses()
            db.execute(
                "INSERT INTO answers (key, value, expires_at, used_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at, used_at = excluded.used_at",
                (key, value, now + self.ttl_s, now),
            )
            (count,) = db.execute("SELECT count(*) FROM answers").fetchone()
            if count > self.max_entries:
                # Expired rows are never hit, so their last use is old: they go first anyway.
                db.execute(
                    "DELETE FROM answers WHERE key IN "
                    "(SELECT key FROM answers ORDER BY used_at LIMIT ?)",
                    (count - self.max_entries,),
                )

    async def size(self) -> int:
        return await self._sqlite.run(self._size)

    def _size(self) -> int:
        (count,) = self._sqlite.connection.execute("SELECT count(*) FROM answers").fetchone()
        return int(count)
