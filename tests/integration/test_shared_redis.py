"""Several `moe serve` processes sharing tracker state: the bars of the tracking work.

Real processes, the real Redis on 127.0.0.1:6379 (a unique key prefix per test, deleted after),
fake OpenAI upstreams on loopback. The upstreams run in the test's event loop, so everything the
test does while they serve is asynchronous.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestServer

from moe_openai_compat.testing import FakeBehaviour, FakeOpenAI
from tests.conftest import REDIS_URL, free_port

KEYS = "key-breaker,key-limit,key-feedback"


@asynccontextmanager
async def upstream(**behaviour: Any) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(behaviour=FakeBehaviour(**behaviour))
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("/v1"))
    finally:
        await server.close()


def write_config(
    path: Path, primary_url: str, backup_url: str, tracking: dict, rpm: int = 50
) -> Path:
    config = {
        "server": {
            "api_keys_env": "TEST_MOE_KEYS",
            "admin_keys_env": "TEST_MOE_ADMIN_KEYS",
            "access_log": False,
        },
        "experts": {
            "primary": {
                "kind": "openai",
                "base_url": primary_url,
                "fallbacks": ["backup"],
                "card": {"provider": "provider-a"},
            },
            "backup": {
                "kind": "openai",
                "base_url": backup_url,
                "card": {"provider": "provider-b"},
            },
        },
        "trackers": {
            "performance": {"kind": "performance"},
            "breaker": {"kind": "circuit-breaker", "failure_threshold": 3, "reset_timeout_s": 60},
            "feedback": {"kind": "feedback"},
            "limits": {"kind": "rate-limit", "per_key": {"requests_per_minute": rpm}},
        },
        "tracking": tracking,
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Gateway:
    """One `moe serve` process."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    async def start(self) -> Gateway:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moe_core.cli", "serve", "--config", str(self.config),
             "--port", str(self.port), "--log-format", "json"],
            env={**os.environ, "TEST_MOE_KEYS": KEYS, "TEST_MOE_ADMIN_KEYS": "key-admin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"gateway exited: {self.process.stderr.read()}")
                try:
                    if (await client.get(f"{self.url}/health", timeout=1)).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("gateway not ready in 60 s")

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush, nothing."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@asynccontextmanager
async def gateways(*configs: Path) -> AsyncIterator[list[Gateway]]:
    started = [Gateway(config) for config in configs]
    try:
        await asyncio.gather(*(gateway.start() for gateway in started))
        yield started
    finally:
        for gateway in started:
            gateway.kill()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(text: str = "hello") -> dict[str, Any]:
    return {"model": "primary", "messages": [{"role": "user", "content": text}]}


async def test_failures_seen_by_one_instance_open_the_breaker_for_both(tmp_path, redis_prefix):
    async with upstream(status=500) as (primary, primary_url), upstream() as (_, backup_url):
        tracking = {"store": "redis", "redis_url": REDIS_URL, "prefix": redis_prefix}
        config = write_config(tmp_path / "moe.yaml", primary_url, backup_url, tracking)
        async with gateways(config, config) as (one, two), httpx.AsyncClient() as client:
            for _ in range(3):
                response = await client.post(
                    f"{one.url}/v1/chat/completions", json=chat(), headers=auth("key-breaker")
                )
                assert response.status_code == 200 and response.json()["model"] == "backup"
            assert len(primary.requests) == 3

            for _ in range(5):
                response = await client.post(
                    f"{two.url}/v1/chat/completions", json=chat(), headers=auth("key-breaker")
                )
                body = response.json()
                assert body["model"] == "backup"
                [fallback] = body["moe_metadata"]["fallbacks"]
                assert "circuit breaker for 'primary' is open" in fallback["error"]
            assert len(primary.requests) == 3, "the second instance never called the provider"

            status = (
                await client.get(f"{two.url}/v1/circuit-breakers", headers=auth("key-breaker"))
            ).json()
            assert status["data"]["primary"]["state"] == "open"

            # A manual reset (an admin's) on one instance closes it for the other.
            await client.post(
                f"{two.url}/v1/circuit-breakers/primary/reset", headers=auth("key-admin")
            )
            primary.behaviour.status = None
            response = await client.post(
                f"{one.url}/v1/chat/completions", json=chat(), headers=auth("key-breaker")
            )
            assert response.json()["model"] == "primary"
            assert len(primary.requests) == 4


async def test_a_rate_limit_holds_across_both_instances(tmp_path, redis_prefix):
    # Counting windows are calendar minutes: start well inside one.
    left = 60 - time.time() % 60
    if left < 20:
        await asyncio.sleep(left + 0.5)
    async with upstream() as (_, primary_url), upstream() as (_, backup_url):
        tracking = {"store": "redis", "redis_url": REDIS_URL, "prefix": redis_prefix}
        config = write_config(tmp_path / "moe.yaml", primary_url, backup_url, tracking)
        async with gateways(config, config) as (one, two), httpx.AsyncClient() as client:
            # Let the window start after both processes are up (they took a few seconds).
            left = 60 - time.time() % 60
            if left < 10:
                await asyncio.sleep(left + 0.5)

            async def ask(gateway: Gateway) -> httpx.Response:
                return await client.post(
                    f"{gateway.url}/v1/chat/completions", json=chat(), headers=auth("key-limit")
                )

            responses = await asyncio.gather(*(ask((one, two)[i % 2]) for i in range(120)))
            statuses = [response.status_code for response in responses]
            admitted = statuses.count(200)
            assert abs(admitted - 50) <= 50 * 0.05, f"{admitted} admitted for a limit of 50"
            assert statuses.count(429) == 120 - admitted
            refused = next(r for r in responses if r.status_code == 429)
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["type"] == "rate_limit_error"
            # Both instances admitted some: the limit was shared, not per process.
            per_instance = [statuses[i::2].count(200) for i in range(2)]
            assert all(per_instance), per_instance


async def test_acknowledged_feedback_survives_kill_9_and_is_seen_by_the_other_instance(
    tmp_path, redis_prefix
):
    async with upstream() as (_, primary_url), upstream() as (_, backup_url):
        tracking = {"store": "redis", "redis_url": REDIS_URL, "prefix": redis_prefix}
        config = write_config(tmp_path / "moe.yaml", primary_url, backup_url, tracking)
        async with gateways(config, config) as (one, two), httpx.AsyncClient() as client:
            headers = auth("key-feedback")
            answer = await client.post(
                f"{one.url}/v1/chat/completions", json=chat(), headers=headers
            )
            request_id = answer.json()["id"]
            acknowledged = await client.post(
                f"{one.url}/v1/feedback",
                json={"request_id": request_id, "outcome": "success", "pr_merged": True},
                headers=headers,
            )
            assert acknowledged.status_code == 201
            one.kill()
            seen = await client.get(f"{two.url}/v1/feedback/{request_id}", headers=headers)
            assert seen.status_code == 200
            assert seen.json()["expert"] == "primary" and seen.json()["pr_merged"] is True
            report = await client.get(f"{two.url}/v1/experts/primary/report", headers=headers)
            assert report.json()["learned_weight"] == pytest.approx(1.1)


async def test_acknowledged_feedback_survives_kill_9_with_sqlite(tmp_path):
    async with upstream() as (_, primary_url), upstream() as (_, backup_url):
        tracking = {"store": "sqlite", "path": str(tmp_path / "tracking.sqlite3")}
        config = write_config(tmp_path / "moe.yaml", primary_url, backup_url, tracking, 1000)
        headers = auth("key-feedback")
        async with gateways(config) as (gateway,), httpx.AsyncClient() as client:
            ids = []
            for index in range(20):
                answer = await client.post(
                    f"{gateway.url}/v1/chat/completions", json=chat(f"q{index}"), headers=headers
                )
                ids.append(answer.json()["id"])
            acknowledged = await asyncio.gather(
                *(
                    client.post(
                        f"{gateway.url}/v1/feedback",
                        json={"request_id": request_id, "rating": 1 + index % 5},
                        headers=headers,
                    )
                    for index, request_id in enumerate(ids)
                )
            )
            assert [r.status_code for r in acknowledged] == [201] * 20
            gateway.kill()  # right after the last acknowledgement
        async with gateways(config) as (restarted,), httpx.AsyncClient() as client:
            for index, request_id in enumerate(ids):
                seen = await client.get(
                    f"{restarted.url}/v1/feedback/{request_id}", headers=headers
                )
                assert seen.status_code == 200, request_id
                assert seen.json()["rating"] == 1 + index % 5
            report = (
                await client.get(f"{restarted.url}/v1/experts/primary/report", headers=headers)
            ).json()
            assert report["feedback"]["feedback"] == 20
