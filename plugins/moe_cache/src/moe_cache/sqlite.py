"""Answers in one SQLite file, so that a restarted gateway still serves what it cached.

One connection in WAL mode on one worker thread: the event loop never waits on the disk, and
each operation is one short transaction. Expiry times are wall-clock seconds (they must survive
a restart, which a monotonic clock does not). A hit is a read only: when an entry was last used
is noted in memory and written with the next write (or at close), since a commit costs ten times
the read. Eviction happens only in a write, after those notes are in: when the write takes the
table past ``max_entries`` rows, the least recently used rows go (expired ones among the first,
since nothing can hit them) in the same transaction, so the row count never exceeds the bound.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
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
        self._db: sqlite3.Connection | None = None
        self._worker: ThreadPoolExecutor | None = None
        # Hits not yet written: key -> when. Touched only on the worker thread.
        self._used: dict[str, float] = {}

    async def start(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moe-cache-sqlite")
        self._db = await self._run(self._open)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # A cache may lose its last writes on power loss: no fsync per answer.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        return db

    async def close(self) -> None:
        if self._db is None:
            return
        await self._run(self._write_uses)
        db, self._db = self._db, None
        await self._run(db.close)
        assert self._worker is not None
        self._worker.shutdown(wait=True)
        self._worker = None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._worker is None:
            raise RuntimeError("the SQLite cache store is not started")
        return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the SQLite cache store is closed")
        return self._db

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._get, key)

    def _get(self, key: str) -> bytes | None:
        db, now = self._conn(), self.clock()
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
        db, used, self._used = self._conn(), self._used, {}
        rows = [(at, key) for key, at in used.items()]
        if db.in_transaction:
            db.executemany("UPDATE answers SET used_at = ? WHERE key = ?", rows)
            return
        with db:  # one commit for all of them, not one per row
            db.execute("BEGIN")
            db.executemany("UPDATE answers SET used_at = ? WHERE key = ?", rows)

    async def put(self, key: str, value: bytes) -> None:
        await self._run(self._put, key, value)

    def _put(self, key: str, value: bytes) -> None:
        db, now = self._conn(), self.clock()
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
        return await self._run(self._size)

    def _size(self) -> int:
        (count,) = self._conn().execute("SELECT count(*) FROM answers").fetchone()
        return int(count)
