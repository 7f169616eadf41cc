"""Answers in Redis, shared by every gateway instance pointing at the same server.

Each answer is a string key expiring on its own (``SET ... PX``); a sorted set under the same
prefix indexes the keys by last use, so that the cache holds at most ``max_entries`` answers
whatever the number of instances writing to it. A write and the eviction it makes necessary
are one Lua script, atomic on the server; a hit refreshes the entry's place in the index in the
same round trip as the read. Index members whose entry must have expired (unused for longer
than the time to live) are dropped on every write, so the index stays bounded too.
"""

from __future__ import annotations

from typing import Any

from moe_stores.redis import connect

# Times are the server's (TIME, in microseconds: calls a millisecond apart stay in order), so
# that instances whose clocks differ agree on which entries are the oldest; Redis 5+ replicates
# a script's effects, which allows TIME in it.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS[1] = entry, KEYS[2] = index. Returns the value or nil.
_GET = (
    _NOW
    + """
local value = redis.call('GET', KEYS[1])
if value then redis.call('ZADD', KEYS[2], 'XX', now, KEYS[1]) end
return value
"""
)

# KEYS[1] = entry, KEYS[2] = index; ARGV = value, ttl_ms, max_entries.
_PUT = (
    _NOW
    + """
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl * 1000)
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then
  local evicted = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #evicted, 2 do redis.call('DEL', evicted[i]) end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return extra
"""
)


class RedisStore:
    """A bounded, expiring answer store in Redis (redis-py's asyncio client)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        ttl_s: float,
        max_entries: int,
        max_connections: int = 32,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.index = prefix + "index"
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.max_entries = max_entries
        self.max_connections = max_connections
        self._redis: Any = None
        self._get: Any = None
        self._put: Any = None

    async def start(self) -> None:
        if self._redis is not None:
            return
        self._redis = await connect(self.url, max_connections=self.max_connections)
        self._get = self._redis.register_script(_GET)
        self._put = self._redis.register_script(_PUT)

    async def close(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose(close_connection_pool=True)

    async def get(self, key: str) -> bytes | None:
        value = await self._get(keys=[self.prefix + key, self.index])
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes) -> None:
        args = [value, self.ttl_ms, self.max_entries]
        await self._put(keys=[self.prefix + key, self.index], args=args)

    async def size(self) -> int:
        return int(await self._redis.zcard(self.index))
