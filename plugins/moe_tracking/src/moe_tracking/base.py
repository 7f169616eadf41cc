"""What every tracker that keeps state in the shared store has in common.

Every such tracker of a gateway shares the one store the ``tracking`` section names, which it
asks the gateway for when attached (:meth:`StoredTracker.attach`); the gateway opens the store
before starting any part and closes it after them. Gates read trackers synchronously (see
:mod:`moe_core.signals`), so a tracker answers from a local view: updated at once by its own
events and, when the store is shared with other instances (Redis), reloaded every
``tracking.refresh_s`` seconds by a background task. A tracker may also write behind
(:attr:`StoredTracker.writes_behind`): fold its updates locally and :meth:`flush` them in one
atomic update per key on the same schedule and at shutdown, which keeps store round trips off
the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog
from pydantic import BaseModel

from moe_core.parts import Tracker
from moe_tracking.store import MemoryStore, Store
from moe_tracking.stores import RESOURCE, SECTION, TrackingConfig, open_store

if TYPE_CHECKING:
    from moe_core.orchestrator import MoE

log = structlog.get_logger(__name__)


class StoredTracker(Tracker):
    """A tracker whose state lives in the configured store."""

    writes_behind = False
    """Whether :meth:`flush` must run periodically even when the store is not shared."""

    def __init__(self, name: str, options: BaseModel) -> None:
        super().__init__(name, options)
        # A tracker built outside a gateway (a test, a script) keeps its state in memory.
        self.store: Store = MemoryStore()
        self.refresh_s = 0.5
        self._background: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def attach(self, moe: MoE) -> None:
        """Keep state in the gateway's store (called once, before :meth:`start`)."""
        settings: TrackingConfig = moe.config.section(SECTION)
        self.store = moe.resource(RESOURCE, lambda: open_store(settings))
        self.refresh_s = settings.refresh_s

    async def start(self) -> None:
        self._stopping.clear()
        await self.refresh()
        if self.store.shared or self.writes_behind:
            self._background = asyncio.create_task(self._sync_forever())

    async def close(self) -> None:
        if self._background is not None:
            # Asked to stop rather than cancelled: a cancellation landing inside a Redis call
            # can be swallowed by the client, which would leave this loop running forever.
            self._stopping.set()
            done, _ = await asyncio.wait({self._background}, timeout=10)
            if not done:
                self._background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._background
            self._background = None
        await self.flush()

    async def refresh(self) -> None:
        """Reload the local view from the store (at start, and periodically when shared)."""

    async def flush(self) -> None:
        """Write what was folded locally (trackers that write behind)."""

    async def sync(self) -> None:
        """One background step: flush, then reload what other instances wrote."""
        await self.flush()
        if self.store.shared:
            await self.refresh()

    async def _sync_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.refresh_s)
            if self._stopping.is_set():
                return
            try:
                await self.sync()
            except Exception as exc:
                log.warning("tracker.sync_failed", tracker=self.name, error=str(exc))


def store_of(moe: MoE) -> Store | None:
    """The store a gateway's trackers share, or ``None`` when none of them keeps state."""
    for tracker in moe.trackers.values():
        if isinstance(tracker, StoredTracker):
            return tracker.store
    return None
