"""Shared fixtures: a fake OpenAI upstream on loopback and gateways built from config dicts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
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
