"""The configured experts, each with its card and load state.

Loading a model can take a minute, so experts start in the background: the server answers at
once, calls to an expert that is still loading get a 503 naming it (or go to its fallbacks), and
``GET /health`` shows who is ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Literal

import structlog

from moe_core.errors import ExpertUnavailable
from moe_core.models import ExpertCard
from moe_core.parts import Expert

log = structlog.get_logger(__name__)

State = Literal["idle", "loading", "ready", "failed"]
_TIMER: ContextVar[asyncio.Timeout | None] = ContextVar("moe_expert_timer", default=None)


@asynccontextmanager
async def queued() -> AsyncIterator[None]:
    """Around an expert's wait for its own resources (a pooled connection, a place in line): the
    caller's ``timeout_s`` stops for it and goes on where it stopped, since waiting in line is not
    the expert being slow (the expert bounds such a wait with a limit of its own)."""
    timer = _TIMER.get()
    when = None if timer is None else timer.when()
    if timer is None or when is None:
        yield
        return
    loop = asyncio.get_running_loop()
    left = when - loop.time()
    timer.reschedule(None)
    try:
        yield
    finally:
        timer.reschedule(loop.time() + left)


@asynccontextmanager
async def _timed(seconds: float) -> AsyncIterator[None]:
    async with asyncio.timeout(seconds) as timer:
        token = _TIMER.set(timer)
        try:
            yield
        finally:
            _TIMER.reset(token)


class ExpertSlot:
    """One configured expert: the object, its effective card, and where it is in its lifecycle."""

    def __init__(
        self,
        expert: Expert,
        *,
        kind: str,
        card: ExpertCard,
        fallbacks: list[str],
        timeout_s: float | None,
    ) -> None:
        self.expert = expert
        self.name = expert.name
        self.kind = kind
        self.card = card
        self.fallbacks = fallbacks
        self.timeout_s = timeout_s
        self.state: State = "idle"
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._started_at: float | None = None

    async def start(self) -> None:
        self.state = "loading"
        self._started_at = time.monotonic()
        log.info("expert.loading", expert=self.name, kind=self.kind)
        try:
            await self.expert.start()
        except Exception as exc:
            self.state = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("expert.failed", expert=self.name, kind=self.kind, error=self.error)
            return
        self.load_seconds = round(time.monotonic() - self._started_at, 3)
        self.state = "ready"
        log.info("expert.ready", expert=self.name, kind=self.kind, seconds=self.load_seconds)

    def check_ready(self) -> None:
        """Raise :class:`ExpertUnavailable` with the reason unless calls can go through."""
        if self.state == "ready":
            return
        if self.state == "failed":
            raise ExpertUnavailable(f"expert {self.name!r} failed to load: {self.error}")
        waited = time.monotonic() - (self._started_at or time.monotonic())
        raise ExpertUnavailable(
            f"expert {self.name!r} is still loading ({waited:.0f} s so far); retry shortly",
            headers={"Retry-After": "5"},
        )

    def timer(self) -> AbstractAsyncContextManager[object]:
        """``timeout_s`` around one call, or one wait for a chunk of a stream; :func:`queued`
        waits inside it do not count."""
        return asyncio.timeout(None) if self.timeout_s is None else _timed(self.timeout_s)

    def status(self) -> dict[str, object]:
        status: dict[str, object] = {"state": self.state, "kind": self.kind}
        if self.error:
            status["error"] = self.error
        if self.load_seconds is not None:
            status["load_seconds"] = self.load_seconds
        return status


class ExpertPool(Mapping[str, ExpertSlot]):
    """Experts by name, in configuration order."""

    def __init__(self, slots: list[ExpertSlot]) -> None:
        self._slots = {slot.name: slot for slot in slots}
        self.names = frozenset(self._slots)
        """Every expert's name, for quick membership tests of whole lists."""
        self._cards = MappingProxyType({slot.name: slot.card for slot in slots})
        self._tasks: list[asyncio.Task[None]] = []

    def __getitem__(self, name: str) -> ExpertSlot:
        return self._slots[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, name: object) -> bool:
        return name in self._slots

    def cards(self) -> Mapping[str, ExpertCard]:
        """Every expert's card, for gates to choose among (loading ones included: a call to one
        that is not ready yet fails with a clear 503 or goes to its fallbacks). Read-only, and
        the same mapping for every request."""
        return self._cards

    async def start(self, *, wait: bool) -> None:
        self.load(self._slots.values())
        if wait:
            await asyncio.gather(*self._tasks)

    def load(self, slots: Iterable[ExpertSlot]) -> None:
        """Start loading ``slots`` in the background (every slot at startup, a reload's new
        ones); until ready they answer 503, and :meth:`close` cancels what is still loading."""
        self._tasks = [asyncio.create_task(slot.start()) for slot in slots]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot in self._slots.values():
            try:
                await slot.expert.close()
            except Exception as exc:
                log.warning("expert.close_failed", expert=slot.name, error=str(exc))
            slot.state = "idle"
