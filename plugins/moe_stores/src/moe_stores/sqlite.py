"""One SQLite connection in WAL mode, used from one worker thread.

The event loop never waits on the disk: every operation runs on the worker, one at a time, so a
store's functions see the connection alone and each can be one short transaction. The connection
is in autocommit mode (``isolation_level=None``): a store opens its transactions itself. A
writer waits up to five seconds for another process's lock before failing. What a store keeps,
its ``synchronous`` setting and whatever it does before closing are the store's own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SYNCHRONOUS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
"""The values of ``PRAGMA synchronous`` a worker accepts."""


class SQLiteWorker:
    """The connection to one SQLite file and the thread that uses it, between ``start`` and
    ``close``.

    ``name`` names the store in errors (``the SQLite cache store is closed``); ``thread_name`` is
    the worker thread's name prefix; ``schema`` is a script of ``CREATE ... IF NOT EXISTS``
    statements run on every open.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        schema: str,
        name: str,
        thread_name: str,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(sorted(SYNCHRONOUS))}, not {synchronous!r}"
            )
        self.path = Path(path)
        self.schema = schema
        self.name = name
        self.thread_name = thread_name
        self.synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        # Parts that share the store may start it at once: one of them opens it.
        self._starting = asyncio.Lock()

    @property
    def started(self) -> bool:
        """Whether the connection is open (after ``start``, before ``close``)."""
        return self._db is not None

    async def start(self) -> None:
        """Create the file's folder, the worker thread and the connection (once, however many
        callers start it together)."""
        async with self._starting:
            if self._db is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
            try:
                db = await asyncio.get_running_loop().run_in_executor(executor, self._open)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor, self._db, self._closed = executor, db, False

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(self.schema)
        except BaseException:
            db.close()
            raise
        return db

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the worker thread, after what was asked for before it."""
        if self._executor is None:
            raise RuntimeError(self._not_open())
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for functions that ``run`` runs; an error when it is not open."""
        if self._db is None:
            raise RuntimeError(self._not_open())
        return self._db

    async def close(self) -> None:
        """Close the connection on the worker thread, then stop the thread. Functions already
        waiting for the worker then find no connection (a RuntimeError naming the store)."""
        if self._db is None:
            return
        db, self._db, self._closed = self._db, None, True
        assert self._executor is not None
        try:
            await self.run(db.close)
        finally:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True)

    def _not_open(self) -> str:
        return f"the {self.name} is {'closed' if self._closed else 'not started'}"
