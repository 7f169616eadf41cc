"""A fake Anthropic upstream on loopback, and the official SDK pointed at a gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from aiohttp.test_utils import TestClient, TestServer

from moe_anthropic.testing import FakeAnthropic

ECHO = {
    "experts": {
        "echo": {"kind": "echo", "prefix": "echo: "},
        "other": {"kind": "echo", "prefix": "other: "},
    }
}


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[tuple[FakeAnthropic, str]]:
    """A fake Anthropic Messages API; yields it and its ``base_url`` (the API root)."""
    fake = FakeAnthropic()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def claude(base_url: str, **options: Any) -> dict[str, Any]:
    """A config with one ``anthropic`` expert, ``claude``, in front of ``base_url``."""
    expert = {"kind": "anthropic", "base_url": base_url, "api_key_env": None, **options}
    return {"experts": {"claude": expert}}


def sdk(client: TestClient, **kwargs: Any) -> anthropic.AsyncAnthropic:
    """The official async client, talking to the gateway behind ``client``."""
    kwargs.setdefault("api_key", "unused")
    return anthropic.AsyncAnthropic(base_url=str(client.make_url("")), max_retries=0, **kwargs)
