"""Shared fixtures: a fake OpenAI upstream on loopback and gateways built from config dicts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from moe_core.server import create_app
from moe_core.testing import make_moe
from moe_openai_compat.testing import FakeOpenAI

GatewayFactory = Callable[..., Awaitable[TestClient]]


def run_moe(
    *args: str, env: Mapping[str, str | None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``moe`` command as a user would, in its own process.

    :param env: changes to this process's environment; ``None`` removes a variable.
    """
    environment = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return subprocess.run(
        [sys.executable, "-m", "moe_core.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_healthy(
    url: str, process: subprocess.Popen | None = None, timeout_s: float = 60
) -> None:
    """Wait until a gateway started as a process answers ``/health`` with 200 (its gate and
    experts loaded); fail at once if that process exits first."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process is None or process.poll() is None, "the gateway exited"
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the gateway never became healthy")


def streamed_content(text: str) -> str:
    """The answer's text in a chat-completions event stream (the body of a streamed response)."""
    events = [line[6:] for line in text.splitlines() if line.startswith("data: {")]
    chunks = [json.loads(event) for event in events]
    texts = (c["choices"][0]["delta"].get("content") for c in chunks if c.get("choices"))
    return "".join(text or "" for text in texts)


def user(text: str, **extra: Any) -> dict[str, Any]:
    """A minimal chat request body."""
    return {"messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
async def fake_upstream() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    """A fake OpenAI-compatible server; yields it and its ``base_url``."""
    fake = FakeOpenAI()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayFactory]:
    """Build a gateway from a config dict (``echo`` expert kind available) and an HTTP client."""
    clients: list[TestClient] = []

    async def build(config: dict[str, Any], *, plugins=(), wait: bool = True) -> TestClient:
        moe = make_moe(config, plugins=plugins)
        client = TestClient(TestServer(create_app(moe, wait_for_experts=wait), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


@pytest.fixture(autouse=True, scope="session")
def _tracker_data_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Trackers of the embedded default config keep SQLite files in $MOE_DATA_DIR: point it at
    a temporary directory (inherited by `moe` subprocesses) so tests never write into $HOME."""
    os.environ["MOE_DATA_DIR"] = str(tmp_path_factory.mktemp("moe-data"))


REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted after the test.

    Ask for it before ``gateway`` so that it is torn down after the gateway, whose trackers
    write their last figures when they close."""
    if not redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI starts it)")
    prefix = f"moe-test:{uuid.uuid4().hex}:"
    yield prefix
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def default_gateway() -> Iterator[str]:
    """`moe serve` with the embedded default (real models, no config, no network) as a separate
    process on loopback, ready; started once for every test that needs it (it takes seconds)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "MOE_CONFIG"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moe_core.cli",
            "serve",
            "--port",
            str(port),
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    # The first run converts the GGUF file once (~30 s); later runs load in seconds.
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"moe serve exited: {process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the default model did not become ready within 300 s")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def serving(config: Mapping[str, Any], tmp_path: Path, **env: str) -> Iterator[subprocess.Popen]:
    """``moe serve`` on ``config`` in a process of its own (its ``$MOE_DATA_DIR`` in
    ``tmp_path``, ``env`` added to the environment); killed on the way out unless it stopped."""
    path = tmp_path / "moe.yaml"
    path.write_text(yaml.safe_dump(dict(config)))
    process = subprocess.Popen(
        [sys.executable, "-m", "moe_core.cli", "serve", "--config", str(path)],
        env={**os.environ, "MOE_DATA_DIR": str(tmp_path), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
