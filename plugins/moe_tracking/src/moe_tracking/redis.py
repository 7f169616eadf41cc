"""The Redis store: tracker state shared by every gateway instance pointing at one server.

Each operation is atomic on the server: a hash update (increments, averages and sets together)
is one Lua script, a capped sample list is a MULTI of LPUSH and LTRIM, a claim is ``SET NX PX``.
Two instances updating the same counters at once therefore never lose an update. Every key is
under the configured prefix, so several deployments (or test runs) can share one server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from moe_stores.redis import connect
from moe_tracking.store import Hash, Store, decode

# KEYS[1] = hash; ARGV = ttl_ms, n_incr, (field, amount)*, n_ema, (field, value, alpha, start)*,
# n_set, (field, value)*. Returns the whole hash.
_UPDATE = """
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local value = tonumber(ARGV[i + 1])
  local alpha = tonumber(ARGV[i + 2])
  local old = redis.call('HGET', key, ARGV[i])
  if not old and ARGV[i + 3] ~= '' then old = ARGV[i + 3] end
  if old then value = alpha * value + (1 - alpha) * tonumber(old) end
  redis.call('HSET', key, ARGV[i], string.format('%.17g', value)); i = i + 4
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1]); i = i + 2
end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
return redis.call('HGETALL', key)
"""


class RedisStore(Store):
    """Tracker state in Redis (redis-py's asyncio client, one connection pool per gateway)."""

    shared = True

    def __init__(self, url: str, prefix: str = "moe:", max_connections: int = 32) -> None:
        super().__init__(prefix)
        self.url = url
        self.max_connections = max_connections
        self._redis: Any = None
        self._update: Any = None

    async def start(self) -> None:
        if self._redis is not None:
            return
        self._redis = await connect(
            self.url, max_connections=self.max_connections, decode_responses=True
        )
        self._update = self._redis.register_script(_UPDATE)

    async def close(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose(close_connection_pool=True)

    @property
    def redis(self) -> Any:
        if self._redis is None:
            raise RuntimeError("the Redis tracking store is not started")
        return self._redis

    async def update(self, key, *, incr=None, ema=None, set=None, ttl_s=None) -> Hash:
        args: list[Any] = [0 if ttl_s is None else max(1, int(ttl_s * 1000))]
        incr, ema, set = incr or {}, ema or {}, set or {}
        args.append(len(incr))
        for field, amount in incr.items():
            args += [field, repr(float(amount))]
        args.append(len(ema))
        for field, (value, alpha, start) in ema.items():
            args += [field, repr(float(value)), repr(float(alpha))]
            args.append("" if start is None else repr(float(start)))
        args.append(len(set))
        for field, value in set.items():
            args += [field, value if isinstance(value, str) else repr(float(value))]
        self.redis  # noqa: B018 - raises a clear error when not started
        flat = await self._update(keys=[self.prefix + key], args=args)
        return {flat[i]: decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def get(self, key: str) -> Hash:
        raw = await self.redis.hgetall(self.prefix + key)
        return {field: decode(value) for field, value in raw.items()}

    async def scan(self, prefix: str) -> dict[str, Hash]:
        keys = [
            key
            async for key in self.redis.scan_iter(
                match=_glob_escape(self.prefix + prefix) + "*", count=500, _type="hash"
            )
        ]
        if not keys:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            hashes = await pipe.execute()
        return {
            key[len(self.prefix) :]: {field: decode(value) for field, value in raw.items()}
            for key, raw in zip(keys, hashes, strict=True)
            if raw
        }

    async def delete(self, key: str) -> None:
        await self.redis.delete(self.prefix + key)

    async def push(self, key: str, values: Sequence[float], cap: int) -> None:
        if not values:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.prefix + key, *(repr(float(value)) for value in values))
            pipe.ltrim(self.prefix + key, 0, cap - 1)
            await pipe.execute()

    async def values(self, key: str) -> list[float]:
        return [float(value) for value in await self.redis.lrange(self.prefix + key, 0, -1)]

    async def claim(self, key: str, ttl_s: float) -> bool:
        taken = await self.redis.set(self.prefix + key, "1", nx=True, px=max(1, int(ttl_s * 1000)))
        return bool(taken)

    async def append(
        self, stream: str, record: Mapping[str, Any], *, keep: int | None = None
    ) -> int:
        # RPUSH returns once the server has the record; with Redis persistence (AOF) that
        # is what makes it durable, and every other instance sees it at once.
        key = self.prefix + stream
        length = int(await self.redis.rpush(key, json.dumps(dict(record))))
        if keep is None:
            return length
        # A trimmed list's length no longer numbers its records: a counter does, from the
        # length the log had when it was first trimmed.
        sequence = int(await self.redis.incr(key + ":seq"))
        if sequence < length:
            sequence = int(await self.redis.incrby(key + ":seq", length - sequence))
        if length > keep:
            await self.redis.ltrim(key, -keep, -1)
        return sequence

    async def records(self, stream: str, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.prefix + stream, -limit, -1)
        return [json.loads(item) for item in raw]


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
