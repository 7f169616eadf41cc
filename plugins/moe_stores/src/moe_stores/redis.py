"""A Redis client on a bounded connection pool, known to answer before a store uses it.

redis is imported when :func:`connect` is called, never at import: it is an optional extra of the
plugins that use this, and importing it costs every start-up a tenth of a second.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from redis.asyncio import Redis

POOL_TIMEOUT_S = 10
"""How long a call waits for a free connection of the pool before failing."""
DEFAULT_URL = "redis://127.0.0.1:6379/0"


class RedisLocation(BaseModel):
    """Where a store's Redis server is: the options every store that may use Redis shares (the
    options model of such a store derives from this one as well)."""

    redis_url_env: str = Field(
        "MOE_REDIS_URL", description="Environment variable holding the Redis URL."
    )
    redis_url: str | None = Field(
        None, description="The Redis URL itself; prefer redis_url_env when it holds a password."
    )

    def resolved_redis_url(self) -> str:
        """The URL itself, else the one in the environment variable, else Redis on this
        machine."""
        return self.redis_url or os.environ.get(self.redis_url_env) or DEFAULT_URL


async def connect(url: str, *, max_connections: int, decode_responses: bool = False) -> Redis:
    """A client of the server at ``url`` that has answered a PING.

    Its pool holds at most ``max_connections`` connections: a burst of calls waits for one
    instead of opening hundreds. When the server does not answer, what was opened is closed and
    a :class:`ConnectionError` names the URL (its password masked) and the cause.
    """
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_S,
        decode_responses=decode_responses,
    )
    client = Redis(connection_pool=pool)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose(close_connection_pool=True)
        raise ConnectionError(f"cannot reach Redis at {safe_url(url)}: {exc}") from exc
    return client


def safe_url(url: str) -> str:
    """``url`` with its password masked (``redis://user:***@host``), for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
