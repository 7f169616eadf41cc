"""The gateway the fuzz suite attacks: every installed plugin's routes, experts that need no model,
every tracker on the SQLite store, and checks of what a client gets back.

Hypothesis drives synchronous test functions, so the gateway runs on an event loop of its own,
turned for each request: one gateway serves thousands of generated requests, as one server
serves many clients, and what one request leaves behind (an A/B test, a feedback, a stored
response) is there for the next.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.test_utils import TestServer

from moe_core import Expert, ExpertResult, InvalidRequest, Register, Usage, hookimpl
from moe_core.models import ChatRequest
from moe_core.server import create_app
from moe_core.testing import make_moe

ANTHROPIC_PATHS = ("/v1/messages",)
MAX_DIMENSIONS = 64


class VectorEcho(Expert):
    """Embeds each text as a unit vector drawn from its SHA-256 (no model), as embedding
    experts do: through ``embed`` (``/v1/embeddings``), and as a JSON array answering a chat
    request whose task type is ``embed`` (``/process``)."""

    async def generate(self, request: ChatRequest) -> ExpertResult:
        text = request.last_user_text()
        if request.hints.task_type == "embed":
            text = json.dumps(vector(text, 8))
        return ExpertResult(content=text, usage=Usage.of(1, 1))

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        size = dimensions or 8
        if size > MAX_DIMENSIONS:
            raise InvalidRequest(f"at most {MAX_DIMENSIONS} dimensions", param="dimensions")
        return [vector(text, size) for text in texts], sum(len(t.split()) for t in texts)


def vector(text: str, size: int) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    raw = [digest[i % len(digest)] - 127.5 for i in range(size)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class _VectorsPlugin:
    @hookimpl
    def moe_register_experts(self, register: Register) -> None:
        register("vector-echo", VectorEcho)


PLUGINS = [("vectors", _VectorsPlugin())]


def fuzz_config(workdir: Path) -> dict[str, Any]:
    return {
        "server": {"max_body_bytes": 256 * 1024, "access_log": False, "body_timeout_s": 5},
        "experts": {
            "echo": {"kind": "echo", "prefix": "echo: ", "card": {"supports_tools": True}},
            "other": {"kind": "echo", "prefix": "other: ", "card": {"quality": 0.9}},
            "vectors": {"kind": "vector-echo", "card": {"capabilities": ["embed"]}},
        },
        "gate": {"kind": "fixed", "expert": "echo", "aliases": ["moe-auto"]},
        "trackers": {
            "performance": {"kind": "performance"},
            "breaker": {"kind": "circuit-breaker"},
            "feedback": {"kind": "feedback"},
            "ab-tests": {"kind": "ab-tests"},
            "limits": {"kind": "rate-limit", "per_key": {"requests_per_minute": 10**9}},
        },
        "tracking": {"store": "sqlite", "path": str(workdir / "tracking.sqlite3")},
        "files": {"dir": str(workdir / "files"), "max_bytes": 64 * 1024},
    }


class FuzzGateway:
    """A gateway on its own event loop; ``request`` sends one request and returns what came
    back (status, content type, body)."""

    def __init__(self, workdir: Path) -> None:
        path = workdir / "moe.yaml"  # from a file, so that POST /-/reload really reloads
        path.write_text(yaml.safe_dump(fuzz_config(workdir)))
        self.loop = asyncio.new_event_loop()
        moe = make_moe(str(path), plugins=PLUGINS)
        self.app = create_app(moe, wait_for_experts=True)
        self.server = TestServer(self.app, host="127.0.0.1")
        self.loop.run_until_complete(self.server.start_server())
        self.session = self.loop.run_until_complete(self._session())

    async def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=30)
        return aiohttp.ClientSession(str(self.server.make_url("/")), timeout=timeout)

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.run_until_complete(self.server.close())
        self.loop.close()

    def routes(self) -> set[tuple[str, str]]:
        """(method, path template) of every route the installed plugins mounted."""
        return {
            (route.method, route.resource.canonical)
            for route in self.app.router.routes()
            if route.resource is not None
        }

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        return self.loop.run_until_complete(self._request(method, path, body, headers or {}))

    async def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        async with self.session.request(method, path, data=body, headers=headers) as response:
            return response.status, response.content_type, await response.read()


def check_answer(path: str, status: int, content_type: str, body: bytes) -> None:
    """No 5xx; a 4xx is the wire format's error envelope; a stream has no internal error."""
    assert status < 500, f"{status} from {path}: {body[:600]!r}"
    if status >= 400:
        check_envelope(path, json.loads(body))
    elif content_type == "text/event-stream":
        for line in body.split(b"\n"):
            if line.startswith(b"data: {") and b'"error"' in line:
                event = json.loads(line[6:])
                error = event.get("error") or {}
                assert error.get("type") not in ("server_error", "api_error"), line
    elif content_type == "application/json":
        json.loads(body)


def check_envelope(path: str, payload: dict[str, Any]) -> None:
    if path.startswith(ANTHROPIC_PATHS):
        assert payload["type"] == "error", payload
        error = payload["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str), payload
        return
    error = payload["error"]
    assert set(error) >= {"message", "type", "param", "code"}, payload
    assert isinstance(error["message"], str) and error["message"], payload
    assert isinstance(error["type"], str), payload
