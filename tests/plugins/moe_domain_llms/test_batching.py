"""MicroBatcher: concurrent submissions share batches, and one bad item fails only itself."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from moe_core import ExpertUnavailable
from moe_domain_llms.batching import MicroBatcher, ModelBusy


class Recorder:
    def __init__(self, fail_on: str | None = None, fail_batch_if_contains: str | None = None):
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.fail_batch_if_contains = fail_batch_if_contains
        self.threads: set[str] = set()

    def __call__(self, items):
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if self.fail_batch_if_contains in items and len(items) > 1:
            raise RuntimeError("the whole batch blew up")
        return [
            ValueError(f"bad {item}") if item == self.fail_on else item.upper() for item in items
        ]


async def test_concurrent_items_share_a_batch_and_each_caller_gets_its_own_result():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, name="t", max_batch=4, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(word) for word in "abcdef"))
    assert results == list("ABCDEF")
    assert [len(batch) for batch in recorder.batches] == [4, 2]
    assert threading.main_thread().name not in recorder.threads  # never on the event loop
    await batcher.close()


async def test_a_failing_item_fails_alone():
    recorder = Recorder(fail_on="b", fail_batch_if_contains="c")
    batcher = MicroBatcher(recorder, name="t", max_batch=8, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(w) for w in "abcd"), return_exceptions=True)
    assert results[0] == "A" and results[2] == "C" and results[3] == "D"
    assert isinstance(results[1], ValueError)
    # The batch raised as a whole (because of "c"), so each item was retried on its own.
    assert recorder.batches[0] == list("abcd") and recorder.batches[1:] == [[w] for w in "abcd"]
    await batcher.close()


async def test_items_with_different_keys_never_share_a_batch():
    recorder = Recorder()
    batcher = MicroBatcher(
        recorder, name="t", max_batch=8, max_wait_s=0.05, key=lambda item: item.isdigit()
    )
    results = await asyncio.gather(*(batcher.submit(w) for w in ["a", "1", "b", "2", "c"]))
    assert results == ["A", "1", "B", "2", "C"]
    assert sorted(map(sorted, recorder.batches)) == [["1", "2"], ["a", "b", "c"]]
    await batcher.close()


class Blocking:
    """A batch function that holds its batch until released or cancelled, like a generation."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.cancelled: list[str] = []
        self.batches: list[list[str]] = []

    def __call__(self, items):
        self.batches.append(list(items))
        self.release.wait(10)
        return [item.upper() for item in items]

    def cancel(self, item: str) -> None:
        self.cancelled.append(item)
        self.release.set()


def blocking_batcher(fn: Blocking, **options) -> MicroBatcher:
    return MicroBatcher(fn, name="slow", max_batch=1, max_wait_s=0, cancel=fn.cancel, **options)


async def test_a_full_queue_is_a_503_with_retry_after_and_close_releases_everyone():
    fn = Blocking()
    batcher = blocking_batcher(fn, max_queue=2)
    first = asyncio.create_task(batcher.submit("busy"))
    await asyncio.sleep(0.05)  # "busy" is now being processed, the queue is empty
    waiting = [asyncio.create_task(batcher.submit(str(i))) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ModelBusy, match="2 requests are already waiting") as refused:
        await batcher.submit("one too many")
    assert refused.value.status == 503 and int(refused.value.headers["Retry-After"]) >= 1
    started = time.monotonic()
    await batcher.close()
    # The running batch was told to stop, and close waited for it, not for its ten seconds.
    assert fn.cancelled == ["busy"] and time.monotonic() - started < 2
    for task in [first, *waiting]:
        with pytest.raises(ExpertUnavailable, match="shutting down"):
            await task


async def test_a_caller_that_stops_waiting_frees_its_place_at_once():
    fn = Blocking()
    batcher = blocking_batcher(fn, max_queue=1)
    first = asyncio.create_task(batcher.submit("busy"))
    await asyncio.sleep(0.05)
    impatient = asyncio.create_task(batcher.submit("impatient"))
    await asyncio.sleep(0)
    assert batcher.waiting == 1
    impatient.cancel()
    await asyncio.sleep(0)
    assert batcher.waiting == 0
    later = asyncio.create_task(batcher.submit("later"))  # not refused: the place is free
    await asyncio.sleep(0)
    fn.release.set()
    assert await first == "BUSY" and await later == "LATER"
    assert ["impatient"] not in fn.batches  # never handed to the model
    assert fn.cancelled == []
    await batcher.close()


async def test_a_caller_that_leaves_mid_batch_cancels_its_item():
    fn = Blocking()
    batcher = blocking_batcher(fn)
    task = asyncio.create_task(batcher.submit("long"))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    assert fn.cancelled == ["long"]
    assert await batcher.submit("next") == "NEXT"  # the worker is free again
    await batcher.close()


async def test_retry_after_grows_with_the_queue_and_the_time_a_batch_takes():
    batcher = MicroBatcher(lambda items: items, name="t", max_batch=4)
    batcher.batch_seconds = 2.0
    assert batcher.retry_after_s() == 2
    batcher.waiting = 8
    assert batcher.retry_after_s() == 6  # two batches ahead, then its own
