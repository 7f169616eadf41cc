"""The one small interface every tracker keeps its state behind, and the in-memory store.

Trackers never talk to SQLite or Redis directly: they use these few operations, each atomic on
its own, so the same tracker works in one process (memory, SQLite) and across many gateway
instances (Redis). A *hash* is a flat mapping of field to number or string (counters, an EMA, a
breaker's state); a *list* keeps the newest samples of a figure (latencies, for percentiles); a
*stream* is an append-only log of JSON records (feedback); a *claim* is a lock that expires (the
single probe a half-open breaker lets through). Expired hashes read as missing at once, and
every store also frees them (Redis by itself, the others by :meth:`Store.purge`), since most keys
with a time to live (a request's record, a rate-limit window) are never read again.
"""

from __future__ import annotations

import abc
import heapq
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Value = float | str
Hash = dict[str, Value]
Ema = tuple[float, float, float | None]
"""An average's update: ``(value, alpha, start)``; see :meth:`Store.update`."""


class Store(abc.ABC):
    """Where trackers keep state. Every key is stored under :attr:`prefix`."""

    shared: bool = False
    """Whether other processes may change this store, so trackers must refresh local views."""
    in_process: bool = False
    """Whether operations complete without I/O, so writing them behind would only cost time."""

    def __init__(self, prefix: str = "moe:") -> None:
        self.prefix = prefix

    async def start(self) -> None:  # noqa: B027 - most stores need no set-up
        """Open connections and create what is missing (tables); runs before trackers start."""

    async def close(self) -> None:  # noqa: B027
        """Release connections; runs after trackers have closed."""

    async def purge(self) -> int:
        """Free the hashes whose time to live has passed now; returns how many it freed.

        Stores run it themselves; Redis frees expired keys on its own, so this frees nothing.
        """
        return 0

    @abc.abstractmethod
    async def update(
        self,
        key: str,
        *,
        incr: Mapping[str, float] | None = None,
        ema: Mapping[str, Ema] | None = None,
        set: Mapping[str, Value] | None = None,
        ttl_s: float | None = None,
    ) -> Hash:
        """Change one hash atomically and return all of it.

        :param incr: field to amount added (missing fields start at 0).
        :param ema: field to ``(value, alpha, start)``: ``alpha * value + (1 - alpha) * old``,
            where ``old`` is ``start`` when the field is missing (``value`` if ``start`` is None).
        :param set: fields overwritten, after the increments and averages.
        :param ttl_s: the hash expires this long after this update.
        """

    @abc.abstractmethod
    async def get(self, key: str) -> Hash:
        """One hash, empty when missing or expired."""

    @abc.abstractmethod
    async def scan(self, prefix: str) -> dict[str, Hash]:
        """Every hash whose key starts with ``prefix`` (keys returned without the store prefix)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Forget a hash, a list or a claim."""

    @abc.abstractmethod
    async def push(self, key: str, values: Sequence[float], cap: int) -> None:
        """Add samples (oldest first) to a list that keeps only the newest ``cap`` ones."""

    @abc.abstractmethod
    async def values(self, key: str) -> list[float]:
        """The samples of a list, newest first."""

    @abc.abstractmethod
    async def claim(self, key: str, ttl_s: float) -> bool:
        """Take a lock unless someone holds it; it frees itself after ``ttl_s``."""

    @abc.abstractmethod
    async def append(
        self, stream: str, record: Mapping[str, Any], *, keep: int | None = None
    ) -> int:
        """Add a JSON record to a log, durably before returning; returns its sequence number.
        With ``keep``, only that many newest records stay, so the log cannot grow forever."""

    @abc.abstractmethod
    async def records(self, stream: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` records of a log, oldest first."""


def apply_update(
    current: Hash,
    incr: Mapping[str, float] | None,
    ema: Mapping[str, Ema] | None,
    set: Mapping[str, Value] | None,
) -> Hash:
    """What :meth:`Store.update` does to a hash, for stores that compute it in Python."""
    result = dict(current)
    for field, amount in (incr or {}).items():
        result[field] = float(result.get(field, 0.0)) + amount
    for field, (value, alpha, start) in (ema or {}).items():
        old = result.get(field, start)
        result[field] = value if old is None else alpha * value + (1 - alpha) * float(old)
    result.update(set or {})
    return result


def decode(value: str | bytes) -> Value:
    """A stored field back to a number where it is one."""
    text = value.decode() if isinstance(value, bytes) else value
    try:
        return float(text)
    except ValueError:
        return text


class MemoryStore(Store):
    """State in this process only: for tests and for gateways that need not remember."""

    in_process = True

    def __init__(self, prefix: str = "moe:", clock: Callable[[], float] = time.time) -> None:
        super().__init__(prefix)
        self.clock = clock
        self._hashes: dict[str, tuple[Hash, float | None]] = {}
        self._lists: dict[str, deque[float]] = {}
        self._claims: dict[str, float] = {}
        self._streams: dict[str, list[dict[str, Any]]] = {}
        self._appended: dict[str, int] = {}  # sequence numbers outlive trimmed records
        # Keys with a time to live, soonest expiry first, each key once: what purge looks at,
        # so that a write never scans every hash.
        self._expiries: list[tuple[float, str]] = []
        self._queued: set[str] = set()

    def _live(self, key: str) -> Hash | None:
        entry = self._hashes.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at is not None and expires_at <= self.clock():
            del self._hashes[key]
            return None
        return value

    async def update(self, key, *, incr=None, ema=None, set=None, ttl_s=None) -> Hash:
        await self.purge()
        value = apply_update(self._live(key) or {}, incr, ema, set)
        expires_at = None if ttl_s is None else self.clock() + ttl_s
        self._hashes[key] = (value, expires_at)
        if expires_at is not None and key not in self._queued:
            heapq.heappush(self._expiries, (expires_at, key))
            self._queued.add(key)
        return dict(value)

    async def purge(self) -> int:
        now = self.clock()
        freed = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            entry = self._hashes.get(key)
            if entry is not None and entry[1] is not None and entry[1] > now:
                # Updated with a later expiry since it was queued: wait for that one.
                heapq.heappush(self._expiries, (entry[1], key))
                continue
            self._queued.discard(key)
            if entry is not None and entry[1] is not None:
                del self._hashes[key]
                freed += 1
        return freed

    async def get(self, key: str) -> Hash:
        return dict(self._live(key) or {})

    async def scan(self, prefix: str) -> dict[str, Hash]:
        return {
            key: dict(value)
            for key in list(self._hashes)
            if key.startswith(prefix) and (value := self._live(key)) is not None
        }

    async def delete(self, key: str) -> None:
        self._hashes.pop(key, None)
        self._lists.pop(key, None)
        self._claims.pop(key, None)

    async def push(self, key: str, values: Sequence[float], cap: int) -> None:
        samples = self._lists.get(key)
        if samples is None or samples.maxlen != cap:
            samples = self._lists[key] = deque(samples or (), maxlen=cap)
        samples.extendleft(values)

    async def values(self, key: str) -> list[float]:
        return list(self._lists.get(key, ()))

    async def claim(self, key: str, ttl_s: float) -> bool:
        now = self.clock()
        if self._claims.get(key, 0.0) > now:
            return False
        self._claims[key] = now + ttl_s
        return True

    async def append(
        self, stream: str, record: Mapping[str, Any], *, keep: int | None = None
    ) -> int:
        log = self._streams.setdefault(stream, [])
        log.append(dict(record))
        self._appended[stream] = sequence = self._appended.get(stream, 0) + 1
        if keep is not None and len(log) > keep:
            del log[:-keep]
        return sequence

    async def records(self, stream: str, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(record) for record in self._streams.get(stream, [])[-limit:]]
