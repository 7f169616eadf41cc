"""What every tracker that keeps state in the shared store has in common.

The orchestrator hands each such tracker the one store named by the ``tracking`` section
(:meth:`StoredTracker.use_store`) before starting it. Gates read trackers synchronously (see
:mod:`moe_core.signals`), so a tracker answers from a local view: updated at once by its own
writes and, when the store is shared with other instances (Redis), reloaded every
``tracking.refresh_s`` seconds by a background task.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from pydantic import BaseModel

from moe_core.parts import Tracker
from moe_core.tracking.store import MemoryStore, Store

log = structlog.get_logger(__name__)


class StoredTracker(Tracker):
    """A tracker whose state lives in the configured store."""

    def __init__(self, name: str, options: BaseModel) -> None:
        super().__init__(name, options)
        # A tracker built outside a gateway (a test, a script) keeps its state in memory.
        self.store: Store = MemoryStore()
        self.refresh_s = 0.5
        self._refresher: asyncio.Task[None] | None = None

    def use_store(self, store: Store, refresh_s: float = 0.5) -> None:
        """Keep state in ``store`` (called once, before :meth:`start`)."""
        self.store = store
        self.refresh_s = refresh_s

    async def start(self) -> None:
        await self.refresh()
        if self.store.shared:
            self._refresher = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def refresh(self) -> None:
        """Reload the local view from the store (at start, and periodically when shared)."""

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("tracker.refresh_failed", tracker=self.name, error=str(exc))
