"""``kill -9`` of a gateway loses nothing it acknowledged: on the SQLite store every feedback it
answered 201 is there after a restart, and every request it answered can still get feedback.

A real ``moe serve`` process, killed with SIGKILL while feedback posts are still arriving (the
ones it had not acknowledged yet may or may not be kept: the client was never told either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import free_port, user

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
CHATS = 40


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    server = TestServer(FakeOpenAI(record=False).app(), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/v1"))
    await server.close()


class Gateway:
    """``moe serve`` in its own process, on the SQLite store in ``workdir``."""

    def __init__(self, workdir: Path, upstream_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "moe.yaml"
        self.log = workdir / "moe.log"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "server": {"port": self.port, "access_log": False, "log_level": "warning"},
                    "experts": {"remote": {"kind": "openai", "base_url": upstream_url}},
                    "trackers": {"feedback": {"kind": "feedback"}},
                    "tracking": {"store": "sqlite", "path": str(workdir / "tracking.sqlite3")},
                }
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        argv = [sys.executable, "-m", "moe_core.cli", "serve", "--config", str(self.config)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log)
        deadline = time.monotonic() + 120  # a cold start imports every plugin
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.url}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise AssertionError(f"not healthy: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


async def chat(session: aiohttp.ClientSession, url: str, n: int) -> str:
    async with session.post(f"{url}/v1/chat/completions", json=user(f"q{n}")) as response:
        assert response.status == 200
        return (await response.json())["id"]


async def feedback(session: aiohttp.ClientSession, url: str, request_id: str, n: int) -> bool:
    """Post feedback; whether the gateway acknowledged it (a connection cut by the kill, or no
    answer before it, is not an acknowledgement)."""
    body = {"request_id": request_id, "rating": 1 + n % 5, "comment": f"feedback {n}"}
    try:
        async with session.post(f"{url}/v1/feedback", json=body) as response:
            return response.status == 201 and (await response.json())["comment"] == f"feedback {n}"
    except aiohttp.ClientError:
        return False


async def test_no_acknowledged_feedback_or_answered_request_is_lost_to_kill_9(
    tmp_path, upstream_url
):
    gateway = Gateway(tmp_path, upstream_url)
    try:
        async with aiohttp.ClientSession() as session:
            await gateway.start(session)
            answered = [await chat(session, gateway.url, n) for n in range(CHATS)]
            judged = answered[: CHATS // 2]  # the rest get their feedback after the restart
            for n, request_id in enumerate(judged[:10]):
                assert await feedback(session, gateway.url, request_id, n)
            # The rest all at once, and the kill as soon as some of them are acknowledged.
            posts = {
                request_id: asyncio.create_task(feedback(session, gateway.url, request_id, n))
                for n, request_id in enumerate(judged[10:], start=10)
            }
            while sum(t.done() and t.result() for t in posts.values()) < 3:
                await asyncio.sleep(0.001)
            gateway.kill()
            acknowledged = judged[:10] + [r for r, t in posts.items() if await t]

        async with aiohttp.ClientSession() as session:
            await gateway.start(session)
            for request_id in acknowledged:
                n = judged.index(request_id)
                async with session.get(f"{gateway.url}/v1/feedback/{request_id}") as response:
                    assert response.status == 200, f"acknowledged feedback {n} was lost"
                    stored = await response.json()
                assert stored["comment"] == f"feedback {n}" and stored["rating"] == 1 + n % 5
                assert stored["matched_request"] is True
            for n, request_id in enumerate(answered[CHATS // 2 :]):
                body = {"request_id": request_id, "outcome": "success"}
                async with session.post(f"{gateway.url}/v1/feedback", json=body) as response:
                    assert response.status == 201, f"answered request {n} is unknown after kill"
                    assert (await response.json())["expert"] == "remote"
    finally:
        gateway.stop()
    assert len(acknowledged) >= 13
