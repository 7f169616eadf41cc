"""Where cached answers live: the store protocol, the in-memory store, and the choice of store.

Every store keeps at most ``max_entries`` answers, each for ``ttl_s`` seconds, and forgets the
least recently used first when full, so a cache never grows without bound whatever callers send.
Values are opaque bytes (a serialised answer); keys are hex digests (:mod:`moe_cache.keys`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from moe_cache.options import CacheOptions
from moe_core.artefacts import data_dir

SQLITE_FILE = "cache.sqlite3"


class CacheStore(Protocol):
    """A bounded key-value store with a time to live (one per ``response-cache`` tracker)."""

    async def start(self) -> None:
        """Connect or open; raises an error saying what cannot be reached."""
        ...

    async def close(self) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or ``None`` when there is none or it has expired."""
        ...

    async def put(self, key: str, value: bytes) -> None:
        """Keep ``value`` for the store's time to live, forgetting the least recently used
        entries beyond its bound."""
        ...

    async def size(self) -> int:
        """How many entries it holds (expired ones not yet removed included)."""
        ...


class MemoryStore:
    """Answers in this process's memory: an LRU dict with expiry times; lost on restart."""

    def __init__(
        self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._entries.clear()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes) -> None:
        self._entries[key] = (self.clock() + self.ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def size(self) -> int:
        return len(self._entries)


def open_store(options: CacheOptions) -> CacheStore:
    """Build (not yet connect) the store the options name; ``start`` connects."""
    bounds = {"ttl_s": options.ttl_s, "max_entries": options.max_entries}
    if options.store == "memory":
        return MemoryStore(**bounds)
    if options.store == "sqlite":
        from moe_cache.sqlite import SQLiteStore

        path = Path(options.path).expanduser() if options.path else data_dir() / SQLITE_FILE
        return SQLiteStore(path, **bounds)
    from moe_cache.redis import RedisStore

    return RedisStore(options.resolved_redis_url(), options.prefix, **bounds)
