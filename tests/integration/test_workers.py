"""``moe serve --workers 2``: two processes on one port, a rate limit that holds across them, a
dead worker replaced, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import free_port, serving, user, wait_healthy

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


async def test_two_workers_share_a_port_a_rate_limit_and_survive_a_kill(tmp_path):
    fake = FakeOpenAI()
    upstream = TestServer(fake.app(), host="127.0.0.1")
    await upstream.start_server()
    port = free_port()
    config = {
        "server": {"port": port, "workers": 2, "shutdown_timeout_s": 2, "access_log": False},
        "experts": {
            "remote": {"kind": "openai", "base_url": str(upstream.make_url("/v1")), "model": "m"}
        },
        "trackers": {"limits": {"kind": "rate-limit", "per_key": {"requests_per_minute": 30}}},
        "tracking": {"store": "sqlite", "path": str(tmp_path / "tracking.sqlite3")},
    }
    url = f"http://127.0.0.1:{port}"
    try:
        with serving(config, tmp_path) as supervisor:
            await wait_healthy(url)
            workers = children_of(supervisor.pid)
            assert len(workers) == 2
            # Fresh connections each time, so the kernel spreads them over both workers.
            statuses = []
            for _ in range(36):
                async with (
                    aiohttp.ClientSession() as fresh,
                    fresh.post(f"{url}/v1/chat/completions", json=user("hi")) as answer,
                ):
                    statuses.append(answer.status)
            # The limit counts in the shared store: 30 across both workers, not 30 each.
            assert statuses.count(200) == 30 and statuses.count(429) == 6

            victim = sorted(workers)[0]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = children_of(supervisor.pid)
                if len(now) == 2 and victim not in now:
                    break
                await asyncio.sleep(0.2)
            assert len(children_of(supervisor.pid)) == 2, "a dead worker is replaced"
            await wait_healthy(url)
            supervisor.send_signal(signal.SIGTERM)
            assert supervisor.wait(timeout=20) == 0
    finally:
        await upstream.close()
