"""The store named by the ``tracking`` section of the configuration."""

from __future__ import annotations

import os
from pathlib import Path

from moe_core.config import TrackingConfig
from moe_core.tracking.store import MemoryStore, Store

DATA_DIR_ENV = "MOE_DATA_DIR"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def data_dir() -> Path:
    """Where the gateway keeps its files: ``$MOE_DATA_DIR``, else the XDG data directory."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "moe"


def open_store(config: TrackingConfig) -> Store:
    """Build (not yet connect) the configured store; :meth:`Store.start` connects."""
    if config.store == "memory":
        return MemoryStore(config.prefix)
    if config.store == "sqlite":
        from moe_core.tracking.sqlite import SQLiteStore

        path = Path(config.path).expanduser() if config.path else data_dir() / "tracking.sqlite3"
        return SQLiteStore(path, config.prefix)
    from moe_core.tracking.redis import RedisStore

    url = config.redis_url or os.environ.get(config.redis_url_env) or DEFAULT_REDIS_URL
    return RedisStore(url, config.prefix)
