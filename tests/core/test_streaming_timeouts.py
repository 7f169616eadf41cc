"""Streamed answers and their limits: an expert's ``timeout_s`` bounds each wait for a chunk (not
the whole answer), and a stream without limits arms no timer yet still ends and reports."""

from __future__ import annotations

import time

import pytest

from moe_core import ExpertTimeout
from moe_core.testing import make_moe
from tests.conftest import user


async def test_timeout_s_bounds_each_chunk_of_a_stream_not_the_whole_answer():
    # Six words, 0.05 s apart: 0.25 s in all, more than timeout_s, each chunk well within it.
    config = {"experts": {"steady": {"kind": "echo", "delay_s": 0.05, "timeout_s": 0.2}}}
    async with make_moe(config) as moe:
        started = time.monotonic()
        stream = await moe.open_stream(user("one two three four five six"))
        words = [delta.content async for delta in stream if delta.content]
        assert time.monotonic() - started > 0.2
    assert "".join(words) == "one two three four five six"
    assert stream.metadata is not None and stream.metadata.experts_used == ["steady"]


async def test_a_chunk_later_than_timeout_s_is_a_timeout_naming_the_expert():
    config = {"experts": {"slow": {"kind": "echo", "delay_s": 0.3, "timeout_s": 0.05}}}
    async with make_moe(config) as moe:
        stream = await moe.open_stream(user("one two"))
        with pytest.raises(ExpertTimeout, match="'slow' did not answer within 0.05 s"):
            async for _ in stream:
                pass


async def test_a_stream_without_limits_is_counted_with_its_usage_when_it_ends():
    config = {"experts": {"free": {"kind": "echo"}}, "trackers": {"memory": {"kind": "memory"}}}
    async with make_moe(config) as moe:
        stream = await moe.open_stream(user("a b c"))
        assert [delta.content async for delta in stream if delta.content] == ["a", " b", " c"]
        snapshot = moe.trackers["memory"].snapshot()  # type: ignore[attr-defined]
    assert snapshot["requests"] == 1 and snapshot["failed_requests"] == 0
    free = snapshot["experts"]["free"]
    assert (free["calls"], free["errors"], free["completion_tokens"]) == (1, 0, 3)
    assert stream.metadata is not None and stream.metadata.experts_used == ["free"]
