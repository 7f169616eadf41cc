"""Grouping concurrent calls into batches: one model call serves many requests.

Local models run much faster per item on a batch than one item at a time (the weights are read
once per step for the whole batch). :class:`MicroBatcher` collects items submitted concurrently,
waits at most ``max_wait_s`` after the first one for others to join, and hands up to
``max_batch`` of them to a batch function in a worker thread. Each caller gets its own result;
when the batch function fails, every item is retried alone, so one bad request never fails the
others.

The work is bounded: at most ``max_queue`` callers wait; beyond that a caller gets
:class:`ModelBusy` (503) with a ``Retry-After`` estimated from how long batches take, instead of
an ever-growing wait. A caller that stops waiting (its client went away, a timeout, shutdown)
leaves the queue at once, and if its item is already in the worker thread, the ``cancel``
callback tells the batch function to drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import structlog

from moe_core.errors import ExpertUnavailable

log = structlog.get_logger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchFunction = Callable[[Sequence[Item]], Sequence["Result | BaseException"]]
# How much the latest batch's duration moves the estimate behind Retry-After.
_EMA_WEIGHT = 0.3


class ModelBusy(ExpertUnavailable):
    """A local model already has as many requests waiting as it may queue; retry later."""

    # The code every local queue uses: breakers never count it (a busy model is not broken).
    code = "expert_busy"


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    key: Hashable
    future: asyncio.Future[Result] = field(repr=False)
    state: Literal["waiting", "running", "gone"] = "waiting"


class MicroBatcher(Generic[Item, Result]):
    """Batches concurrent :meth:`submit` calls into calls of ``batch_fn`` in a thread.

    :param batch_fn: takes a list of items, returns one result (or exception) per item, in order.
        It runs in a worker thread, one batch at a time.
    :param max_batch: the most items in one batch.
    :param max_wait_s: how long the first item of a batch waits for others to join.
    :param max_queue: the most items waiting; beyond it, submissions are refused with a 503.
    :param key: items with different keys never share a batch (e.g. different sampling settings).
    :param cancel: called (on the event loop) for an item already handed to ``batch_fn`` whose
        caller stopped waiting, and for every such item at :meth:`close`; it should make
        ``batch_fn`` give up on it soon (e.g. set a flag its loop checks).
    :param close_timeout_s: how long :meth:`close` waits for the running batch to give up.
    """

    def __init__(
        self,
        batch_fn: BatchFunction[Item, Result],
        *,
        name: str,
        max_batch: int = 8,
        max_wait_s: float = 0.01,
        max_queue: int = 256,
        key: Callable[[Item], Hashable] = lambda item: None,
        cancel: Callable[[Item], None] | None = None,
        close_timeout_s: float = 10.0,
    ) -> None:
        self._batch_fn = batch_fn
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._key = key
        self._cancel = cancel
        self.close_timeout_s = close_timeout_s
        self._queue: asyncio.Queue[_Pending[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._held: list[_Pending[Item, Result]] = []
        self._running: list[_Pending[Item, Result]] = []
        self._call_task: asyncio.Task[Sequence[Result | BaseException]] | None = None
        self.waiting = 0
        """Callers waiting for their batch to start (cancelled ones leave at once)."""
        self.batch_seconds: float | None = None
        """A moving average of how long one batch takes, for ``Retry-After``."""
        self.batches = 0
        self.items = 0

    def _ensure_worker(self) -> asyncio.Queue[_Pending[Item, Result]]:
        if self._queue is None or self._worker is None or self._worker.done():
            # Unbounded: the limit is on callers still waiting (``waiting``), not on entries,
            # so a burst of cancelled callers never blocks the ones that stay.
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return self._queue

    def retry_after_s(self) -> int:
        """Whole seconds until the queue has likely drained enough to take one more."""
        per_batch = self.batch_seconds or 1.0
        return max(1, math.ceil((self.waiting / self.max_batch + 1) * per_batch))

    async def submit(self, item: Item) -> Result:
        """Queue one item and wait for its result."""
        queue = self._ensure_worker()
        if self.waiting >= self.max_queue:
            retry = self.retry_after_s()
            raise ModelBusy(
                f"{self.name} is busy: {self.waiting} requests are already waiting; retry in "
                f"about {retry} s",
                headers={"Retry-After": str(retry)},
            )
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        pending = _Pending(item, self._key(item), future)
        self.waiting += 1
        queue.put_nowait(pending)
        try:
            return await future
        except asyncio.CancelledError:
            self._leave(pending)
            raise

    def _leave(self, pending: _Pending[Item, Result]) -> None:
        """The caller stopped waiting: free its place, or stop its work if it has started."""
        if pending.state == "waiting":
            self.waiting -= 1
        elif pending.state == "running" and self._cancel is not None:
            self._cancel(pending.item)
        pending.state = "gone"

    async def _next_batch(self) -> list[_Pending[Item, Result]]:
        assert self._queue is not None
        first = self._held.pop(0) if self._held else await self._queue.get()
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        # Items held back earlier (another key) get their turn before new arrivals.
        for pending in list(self._held):
            if len(batch) < self.max_batch and pending.key == first.key:
                self._held.remove(pending)
                batch.append(pending)
        while len(batch) < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 and self._queue.empty():
                break
            try:
                pending = (
                    self._queue.get_nowait()
                    if remaining <= 0
                    else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if pending.key == first.key:
                batch.append(pending)
            else:
                self._held.append(pending)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [pending for pending in batch if pending.state == "waiting"]
            if not live:
                continue
            for pending in live:
                pending.state = "running"
            self.waiting -= len(live)
            self._running = live
            started = time.monotonic()
            self._call_task = asyncio.ensure_future(self._call([p.item for p in live]))
            try:
                results = await self._call_task
            finally:
                self._running, self._call_task = [], None
            self._note_duration(time.monotonic() - started)
            self.batches += 1
            self.items += len(live)
            for pending, result in zip(live, results, strict=True):
                if pending.future.done():  # the caller went away meanwhile
                    continue
                pending.state = "gone"
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    def _note_duration(self, seconds: float) -> None:
        previous = self.batch_seconds
        self.batch_seconds = (
            seconds if previous is None else previous + _EMA_WEIGHT * (seconds - previous)
        )

    async def _call(self, items: list[Item]) -> Sequence[Result | BaseException]:
        try:
            return await asyncio.to_thread(self._batch_fn, items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            log.warning(
                "batch.failed_retrying_alone", batcher=self.name, size=len(items), error=str(exc)
            )
        results: list[Result | BaseException] = []
        for item in items:
            try:
                results.extend(await asyncio.to_thread(self._batch_fn, [item]))
            except Exception as exc:
                results.append(exc)
        return results

    async def close(self) -> None:
        """Stop the worker. Every caller still waiting, or whose batch is running, gets
        :class:`ExpertUnavailable`; the running batch is cancelled and waited for (at most
        ``close_timeout_s``), so the model is idle when this returns."""
        running, call = list(self._running), self._call_task
        waiting = [*self._held, *running]
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(ExpertUnavailable(f"{self.name} is shutting down"))
        if self._cancel is not None:
            for pending in running:
                self._cancel(pending.item)
        if call is not None:
            done, _ = await asyncio.wait({call}, timeout=self.close_timeout_s)
            if not done:
                log.warning("batch.still_running_at_close", batcher=self.name, items=len(running))
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._held.clear()
        self.waiting = 0
        self._worker = None
