"""MicroBatcher: concurrent submissions share batches, and one bad item fails only itself."""

from __future__ import annotations

import asyncio
import threading

import pytest

from moe_core import ExpertUnavailable
from moe_domain_llms.batching import MicroBatcher


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


async def test_a_full_queue_is_a_503_and_close_releases_waiters():
    release = threading.Event()

    def slow(items):
        release.wait(5)
        return list(items)

    batcher = MicroBatcher(slow, name="slow", max_batch=1, max_wait_s=0, max_queue=2)
    first = asyncio.create_task(batcher.submit("busy"))
    await asyncio.sleep(0.05)  # "busy" is now being processed, the queue is empty
    waiting = [asyncio.create_task(batcher.submit(str(i))) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ExpertUnavailable, match="2 requests are already waiting"):
        await batcher.submit("one too many")
    await batcher.close()
    release.set()
    for task in waiting:
        with pytest.raises(ExpertUnavailable, match="shutting down"):
            await task
    first.cancel()
