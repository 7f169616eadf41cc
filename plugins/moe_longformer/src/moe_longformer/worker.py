"""One model, one thread, a bounded line: how concurrent requests share a model safely.

A torch model is not safe to call from two threads at once, and model work must never run on
the event loop. So each expert owns a single worker thread; requests queue for it in arrival
order, and when ``max_queue`` are already waiting a new one is refused at once with a 503 (and
``Retry-After``), which also lets the pipeline fall back to another expert instead of piling up.

(moe_byt5 carries the same small module: plugins never import each other.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from moe_core import ExpertUnavailable

T = TypeVar("T")


class ModelWorker:
    """Runs blocking model calls one at a time in a dedicated thread."""

    def __init__(self, name: str, max_queue: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"moe-{name}")
        self._in_line = 0  # queued or running; a call abandoned by its caller counts until it ends

    @property
    def in_line(self) -> int:
        return self._in_line

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Call ``function(*args)`` in the worker thread and wait for its result."""
        if self._in_line >= self.max_queue:
            raise ExpertUnavailable(
                f"expert {self.name!r} is busy: {self._in_line} requests are already in its "
                f"queue (max_queue={self.max_queue}); retry shortly",
                code="expert_busy",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        self._in_line += 1
        future = self._executor.submit(functools.partial(function, *args))
        future.add_done_callback(lambda _: self._leave(loop))
        return await asyncio.wrap_future(future)

    def _leave(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called in the worker thread when a call ends; the count lives on the loop's thread."""
        # A closed loop means nobody is counting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._decrement)

    def _decrement(self) -> None:
        self._in_line -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def loading_lock() -> threading.Lock:
    """One lock for every ``from_pretrained`` in the process, whichever plugin calls it.

    transformers (5.x) is not safe to load two models at once from two threads: loads race on
    its process-wide initialisation state and leave tied weights on the meta device. Plugins
    cannot share a module, so the lock lives on the ``transformers`` module itself
    (``dict.setdefault`` is atomic, so every caller gets the same lock).
    """
    import transformers

    return transformers.__dict__.setdefault("_moe_loading_lock", threading.Lock())
