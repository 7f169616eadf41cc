"""Where stored responses live, so that ``previous_response_id`` can continue a conversation and
``GET /v1/responses/{id}`` can read one back.

Each record is the response object plus the conversation that led to it, as chat messages, kept
as JSON bytes (so its size is known exactly and nobody can change it after it is stored). A
store is bounded three ways, because every stored response holds its whole conversation: each
record expires ``ttl_s`` after it was stored, and the oldest go first when there are more than
``max_entries`` or they take more than ``max_bytes`` together.

:class:`ResponseStore` keeps them in this process's memory. :class:`SQLiteResponseStore` keeps
them in a file, which every worker of ``moe serve --workers N`` shares (a client's next request
may reach any of them) and which a restart keeps; ``responses_store: auto``, the default, picks
it when the gateway runs as several workers.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
import structlog

from moe_core.artefacts import data_dir
from moe_openai_compat.options import OpenAIFrontendOptions
from moe_stores.sqlite import SQLiteWorker

log = structlog.get_logger(__name__)
SQLITE_FILE = "responses.sqlite3"


class Store(Protocol):
    """Stored responses by id, bounded by age, count and bytes."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, record: dict[str, Any]) -> bool:
        """Keep ``record`` under ``key``; ``False`` when it cannot be kept (no room at all)."""
        ...

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def delete(self, key: str) -> bool: ...

    async def size(self) -> tuple[int, int]:
        """How many records it holds, and their bytes."""
        ...


def open_store(options: OpenAIFrontendOptions) -> Store:
    """The store ``responses_store`` names; ``auto`` is the shared file under workers."""
    kind = options.responses_store
    if kind == "auto":
        kind = "sqlite" if int(os.environ.get("MOE_WORKERS") or 1) > 1 else "memory"
    bounds = {
        "max_entries": options.responses_store_max,
        "max_bytes": options.responses_store_max_bytes,
        "ttl_s": options.responses_ttl_s,
    }
    if kind == "memory":
        return ResponseStore(**bounds)
    path = options.responses_store_path
    return SQLiteResponseStore(
        Path(path).expanduser() if path else data_dir() / SQLITE_FILE, **bounds
    )


def _blob(key: str, record: dict[str, Any], max_entries: int, max_bytes: int) -> bytes | None:
    """The record as stored, or None (and a warning) when no store of these bounds keeps it."""
    blob = orjson.dumps(record)
    if max_entries == 0 or len(blob) > max_bytes:
        log.warning("responses.not_stored", id=key, bytes=len(blob), max_bytes=max_bytes)
        return None
    return blob


class ResponseStore:
    """Stored responses in memory, bounded by age, count and bytes."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        # Oldest first: every record lives ttl_s, so the first to expire are at the front.
        self._records: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.bytes = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def size(self) -> tuple[int, int]:
        self._expire()
        return len(self._records), self.bytes

    async def put(self, key: str, record: dict[str, Any]) -> bool:
        """Keep ``record`` under ``key``; ``False`` when it cannot be kept (no room at all)."""
        blob = _blob(key, record, self.max_entries, self.max_bytes)
        if blob is None:
            return False
        self._expire()
        self._forget(key)
        self._records[key] = (self.clock() + self.ttl_s, blob)
        self.bytes += len(blob)
        while len(self._records) > self.max_entries or self.bytes > self.max_bytes:
            self._forget(next(iter(self._records)))
        return True

    async def get(self, key: str) -> dict[str, Any] | None:
        self._expire()
        entry = self._records.get(key)
        return None if entry is None else orjson.loads(entry[1])

    async def delete(self, key: str) -> bool:
        self._expire()
        return self._forget(key)

    def _forget(self, key: str) -> bool:
        entry = self._records.pop(key, None)
        if entry is None:
            return False
        self.bytes -= len(entry[1])
        return True

    def _expire(self) -> None:
        now = self.clock()
        while self._records:
            key, (expires_at, _) = next(iter(self._records.items()))
            if expires_at > now:
                return
            self._forget(key)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, body BLOB NOT NULL, bytes INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires_at);
"""


class SQLiteResponseStore:
    """Stored responses in one SQLite file, shared by the processes that open it.

    Expiry times are wall-clock seconds (they must outlive a restart). Every write is one
    transaction that also drops what expired and, past the bounds, the oldest records (all live
    ``ttl_s``, so the oldest are the first to expire), so the bounds hold across processes.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self._db = SQLiteWorker(
            path,
            schema=_SCHEMA,
            name="SQLite response store",
            thread_name="moe-responses-sqlite",
        )

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    async def put(self, key: str, record: dict[str, Any]) -> bool:
        blob = _blob(key, record, self.max_entries, self.max_bytes)
        if blob is None:
            return False
        await self._db.run(self._put, key, blob)
        return True

    def _put(self, key: str, blob: bytes) -> None:
        db, now = self._db.connection, self.clock()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM responses WHERE expires_at <= ? OR id = ?", (now, key))
            db.execute(
                "INSERT INTO responses (id, body, bytes, expires_at) VALUES (?, ?, ?, ?)",
                (key, blob, len(blob), now + self.ttl_s),
            )
            count, total = db.execute("SELECT COUNT(*), SUM(bytes) FROM responses").fetchone()
            oldest = db.execute("SELECT id, bytes FROM responses ORDER BY expires_at")
            dropped = []
            for old, size in oldest:
                if count <= self.max_entries and total <= self.max_bytes:
                    break
                dropped.append((old,))
                count, total = count - 1, total - size
            db.executemany("DELETE FROM responses WHERE id = ?", dropped)

    async def get(self, key: str) -> dict[str, Any] | None:
        blob = await self._db.run(self._get, key)
        return None if blob is None else orjson.loads(blob)

    def _get(self, key: str) -> bytes | None:
        row = self._db.connection.execute(
            "SELECT body FROM responses WHERE id = ? AND expires_at > ?", (key, self.clock())
        ).fetchone()
        return None if row is None else bytes(row[0])

    async def delete(self, key: str) -> bool:
        return await self._db.run(self._delete, key)

    def _delete(self, key: str) -> bool:
        db = self._db.connection
        with db:
            db.execute("BEGIN IMMEDIATE")
            deleted = db.execute(
                "DELETE FROM responses WHERE id = ? AND expires_at > ?", (key, self.clock())
            ).rowcount
        return deleted > 0

    async def size(self) -> tuple[int, int]:
        return await self._db.run(self._size)

    def _size(self) -> tuple[int, int]:
        count, total = self._db.connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM responses WHERE expires_at > ?",
            (self.clock(),),
        ).fetchone()
        return count, total
