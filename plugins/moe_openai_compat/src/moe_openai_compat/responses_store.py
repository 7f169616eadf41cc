"""Where stored responses live, so that ``previous_response_id`` can continue a conversation and
``GET /v1/responses/{id}`` can read one back.

Each record is the response object plus the conversation that led to it, as chat messages, kept
as JSON bytes (so its size is known exactly and nobody can change it after it is stored). The
store is bounded three ways, because every stored response holds its whole conversation: each
record expires ``ttl_s`` after it was stored, and the oldest go first when there are more than
``max_entries`` or they take more than ``max_bytes`` together. It lives in this process: a
gateway of several instances serves a continuation only from the instance that stored it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
import structlog

log = structlog.get_logger(__name__)


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

    def __len__(self) -> int:
        return len(self._records)

    async def put(self, key: str, record: dict[str, Any]) -> bool:
        """Keep ``record`` under ``key``; ``False`` when it cannot be kept (no room at all)."""
        blob = orjson.dumps(record)
        if self.max_entries == 0 or len(blob) > self.max_bytes:
            log.warning("responses.not_stored", id=key, bytes=len(blob), max_bytes=self.max_bytes)
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
