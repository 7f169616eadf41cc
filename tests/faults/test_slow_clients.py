"""Slow and heavy clients: a body sent byte by byte is cut off with a 408 after
``server.body_timeout_s``, and neither slow bodies, huge bodies nor requests stuck on a hung
expert make another client's small request fail or wait much longer than it does alone.

The slow clients are raw sockets, because no HTTP library sends a body that slowly on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import dataclass

from aiohttp.test_utils import TestClient

from moe_core import Expert, ExpertResult, Register, Usage, hookimpl
from moe_core.models import ChatRequest
from tests.conftest import user

BODY_TIMEOUT_S = 1.0
TRICKLE_S = 0.05  # between two bytes: a 200-byte body would take ten seconds


class Brief(Expert):
    """Answers "ok" whatever it is asked, without reading the prompt: what a huge request
    costs is then the gateway's share alone (the echo expert would split megabytes of words)."""

    async def generate(self, request: ChatRequest) -> ExpertResult:
        return ExpertResult(content="ok", usage=Usage.of(1, 1))


class _BriefPlugin:
    @hookimpl
    def moe_register_experts(self, register: Register) -> None:
        register("brief", Brief)


PLUGINS = [("brief", _BriefPlugin())]


def config(tmp_path) -> dict:
    return {
        "server": {"body_timeout_s": BODY_TIMEOUT_S, "access_log": False},
        "experts": {
            "echo": {"kind": "echo", "prefix": "echo: "},
            "hung": {"kind": "echo", "fail": "hang"},
            "brief": {"kind": "brief"},
        },
        "trackers": {"feedback": {"kind": "feedback"}},
        "tracking": {"store": "memory"},
        "files": {"dir": str(tmp_path / "files")},
    }


@dataclass
class Cut:
    """What a slow client got: the status line and headers, and how long it took."""

    head: str
    body: bytes
    seconds: float


async def send_slowly(client: TestClient, path: str, content_type: str, body: bytes) -> Cut:
    """Send the headers at once, then the body one byte every TRICKLE_S, until answered."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    started = time.monotonic()

    async def trickle() -> None:
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(TRICKLE_S)

    sending = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S + 3):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            seconds = time.monotonic() - started
            length = int(next(
                line.split(":")[1] for line in head.split("\r\n")
                if line.lower().startswith("content-length")
            ))  # fmt: skip
            answer = await reader.readexactly(length)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        writer.close()
    return Cut(head, answer, seconds)


CHAT = json.dumps(user("x" * 150)).encode()
SLOW_JSON = [
    ("/v1/chat/completions", CHAT),
    ("/v1/messages", json.dumps({"model": "auto", "max_tokens": 5, **user("x" * 150)}).encode()),
    ("/v1/feedback", json.dumps({"request_id": "x" * 100, "outcome": "success"}).encode()),
    ("/v1/embeddings", json.dumps({"model": "auto", "input": "x" * 150}).encode()),
]


async def test_bodies_sent_byte_by_byte_get_a_408_while_others_are_served(gateway, tmp_path):
    client = await gateway(config(tmp_path), plugins=PLUGINS)
    slow = [send_slowly(client, path, "application/json", body) for path, body in SLOW_JSON]
    pending = asyncio.gather(*slow)
    served = 0
    while not pending.done():
        started = time.monotonic()
        response = await client.post("/v1/chat/completions", json=user(f"meanwhile {served}"))
        assert response.status == 200
        assert (await response.json())["choices"][0]["message"]["content"].startswith("echo: ")
        assert time.monotonic() - started < BODY_TIMEOUT_S / 2, "a normal client was held up"
        served += 1
        await asyncio.sleep(0.02)
    assert served >= 10
    for (path, _), cut in zip(SLOW_JSON, await pending, strict=True):
        assert cut.head.startswith("HTTP/1.1 408"), (path, cut.head)
        assert BODY_TIMEOUT_S * 0.9 <= cut.seconds < BODY_TIMEOUT_S + 3, (path, cut.seconds)
        assert "connection: close" in cut.head.lower()
        error = json.loads(cut.body)
        if path == "/v1/messages":  # Anthropic's envelope
            assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        else:
            assert error["error"]["code"] == "request_timeout", error
        assert f"did not arrive within {BODY_TIMEOUT_S:g} s" in json.dumps(error)


async def test_an_upload_sent_byte_by_byte_gets_a_408(gateway, tmp_path):
    client = await gateway(config(tmp_path), plugins=PLUGINS)
    body = (
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        + b"y" * 150
        + b"\r\n--b--\r\n"
    )
    cut = await send_slowly(client, "/v1/files", "multipart/form-data; boundary=b", body)
    assert cut.head.startswith("HTTP/1.1 408"), cut.head
    assert cut.seconds < BODY_TIMEOUT_S + 3


async def small_requests(client: TestClient, n: int) -> list[float]:
    """Seconds each of ``n`` small chat requests took, one after the other, all answered."""
    seconds = []
    for index in range(n):
        started = time.monotonic()
        response = await client.post("/v1/chat/completions", json=user(f"small {index}"))
        assert response.status == 200, await response.text()
        await response.read()
        seconds.append(time.monotonic() - started)
    return seconds


async def test_huge_slow_and_stuck_requests_do_not_hold_up_a_small_one(gateway, tmp_path):
    client = await gateway(config(tmp_path), plugins=PLUGINS)
    await small_requests(client, 5)  # warm up
    alone = await small_requests(client, 30)
    huge = json.dumps(user("word " * 1_500_000, model="brief")).encode()  # 7.5 MB, under the limit
    started = time.monotonic()
    response = await client.post(
        "/v1/chat/completions", data=huge, headers={"Content-Type": "application/json"}
    )
    await response.read()
    huge_alone = time.monotonic() - started
    stop = asyncio.Event()
    answered_huge = 0

    async def send_huge() -> None:
        nonlocal answered_huge
        while not stop.is_set():
            response = await client.post(
                "/v1/chat/completions", data=huge, headers={"Content-Type": "application/json"}
            )
            assert response.status == 200
            await response.read()
            answered_huge += 1

    async def keep_slow() -> None:
        while not stop.is_set():
            await send_slowly(client, "/v1/chat/completions", "application/json", CHAT)

    async def stuck() -> None:
        await client.post("/v1/chat/completions", json=user("wait", model="hung"))

    load = [asyncio.create_task(job()) for job in (send_huge, send_huge, keep_slow, keep_slow)]
    load += [asyncio.create_task(stuck()) for _ in range(20)]
    await asyncio.sleep(0.3)
    try:
        loaded = await small_requests(client, 30)
    finally:
        stop.set()
        for task in load[4:]:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
    assert answered_huge >= 1, "the huge requests were answered too"
    typical_alone, typical_loaded = statistics.median(alone), statistics.median(loaded)
    # A small request's share: it may wait while the event loop reads and validates a huge
    # body (two clients send them), never for the slow bodies or the stuck requests.
    figures = {"alone": typical_alone, "loaded": typical_loaded, "huge": huge_alone}
    assert typical_loaded < typical_alone + huge_alone + 0.05, figures
    assert max(loaded) < 3 * huge_alone + 0.3, (max(loaded), figures)
