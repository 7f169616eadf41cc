"""Grouping concurrent calls into batches: one model call serves many requests.

Local models run much faster per item on a batch than one item at a time (the weights are read
once per step for the whole batch). :class:`MicroBatcher` collects items submitted concurrently,
waits at most ``max_wait_s`` after the first one for others to join, and hands up to
``max_batch`` of them to a batch function in a worker thread. Each caller gets its own result;
when the batch function fails, every item is retried alone, so one bad request never fails the
others. The queue is bounded: when it is full, callers get :class:`ExpertUnavailable` (503)
instead of an ever-growing wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

from moe_core.errors import ExpertUnavailable

log = structlog.get_logger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchFunction = Callable[[Sequence[Item]], Sequence["Result | BaseException"]]


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    key: Hashable
    future: asyncio.Future[Result] = field(repr=False)


class MicroBatcher(Generic[Item, Result]):
    """Batches concurrent :meth:`submit` calls into calls of ``batch_fn`` in a thread.

    :param batch_fn: takes a list of items, returns one result (or exception) per item, in order.
        It runs in a worker thread, one batch at a time.
    :param max_batch: the most items in one batch.
    :param max_wait_s: how long the first item of a batch waits for others to join.
    :param max_queue: the most items waiting; beyond it, submissions are refused with a 503.
    :param key: items with different keys never share a batch (e.g. different sampling settings).
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
    ) -> None:
        self._batch_fn = batch_fn
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._key = key
        self._queue: asyncio.Queue[_Pending[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._held: list[_Pending[Item, Result]] = []
        self.batches = 0
        self.items = 0

    def _ensure_worker(self) -> asyncio.Queue[_Pending[Item, Result]]:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue(maxsize=self.max_queue)
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return self._queue

    async def submit(self, item: Item) -> Result:
        """Queue one item and wait for its result."""
        queue = self._ensure_worker()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        try:
            queue.put_nowait(_Pending(item, self._key(item), future))
        except asyncio.QueueFull:
            raise ExpertUnavailable(
                f"{self.name}: {self.max_queue} requests are already waiting; retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        return await future

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
            live = [pending for pending in batch if not pending.future.done()]
            if not live:
                continue
            results = await self._call([pending.item for pending in live])
            self.batches += 1
            self.items += len(live)
            for pending, result in zip(live, results, strict=True):
                if pending.future.done():  # the caller went away meanwhile
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

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
        """Stop the worker; callers still waiting get :class:`ExpertUnavailable`."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        waiting = list(self._held)
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(ExpertUnavailable(f"{self.name} is shutting down"))
        self._held.clear()
        self._worker = None
