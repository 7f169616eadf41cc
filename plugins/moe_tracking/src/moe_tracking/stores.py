"""The ``tracking`` section of the configuration, and the one store it names per gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from moe_core.artefacts import data_dir
from moe_core.plugins import Options
from moe_stores.redis import RedisLocation
from moe_tracking.store import MemoryStore, Store

SECTION = "tracking"
RESOURCE = "tracking.store"
"""Under this key the gateway keeps the store every tracker of it shares."""


class TrackingConfig(Options, RedisLocation):
    """``tracking``: where trackers keep what they learn, shared by every tracker that stores.

    ``memory`` forgets on restart; ``sqlite`` (the embedded default) keeps feedback and counters
    across restarts of one instance; ``redis`` shares them between every instance pointing at the
    same server, which is how several gateways behind a load balancer agree on breakers, limits,
    weights and A/B assignments.
    """

    store: Literal["memory", "sqlite", "redis"] = "sqlite"
    path: str | None = Field(
        None,
        description="SQLite file; default: $MOE_DATA_DIR, else $XDG_DATA_HOME/moe, else "
        "~/.local/share/moe, then tracking.sqlite3.",
    )
    prefix: str = Field("moe:", description="Prefix of every key in Redis (or row in SQLite).")
    refresh_s: float = Field(
        0.5, gt=0, description="How often trackers on a shared store refresh their local view."
    )


def open_store(config: TrackingConfig) -> Store:
    """Build (not yet connect) the configured store; :meth:`Store.start` connects."""
    if config.store == "memory":
        return MemoryStore(config.prefix)
    if config.store == "sqlite":
        from moe_tracking.sqlite import SQLiteStore

        path = Path(config.path).expanduser() if config.path else data_dir() / "tracking.sqlite3"
        return SQLiteStore(path, config.prefix)
    from moe_tracking.redis import RedisStore

    return RedisStore(config.resolved_redis_url(), config.prefix)
