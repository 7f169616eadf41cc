"""An OpenAI-compatible upstream that misbehaves on demand, the ways real providers do.

Healthy, it answers through :class:`moe_openai_compat.testing.FakeOpenAI` (the real wire format,
SSE included). Told a :class:`Fault`, it fails every call that way until healed: a 429 with
``Retry-After``, a 500 or a 503 in OpenAI's error envelope, a hang before the first byte, a
connection dropped in the middle of the body, a 200 whose body is not JSON, OpenAI's 400 for a
prompt over the context window, or no process listening at all (the port refuses connections,
and connections already open are closed, as when the provider's server dies). Healing restarts
it on the same port, so the gateway's configuration stays valid throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket

from aiohttp import web

from moe_openai_compat.testing import FakeOpenAI


class Fault(enum.StrEnum):
    RATE_LIMITED = "429-retry-after"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    HANG = "hang-before-first-byte"
    DROP = "drop-mid-body"
    INVALID_JSON = "invalid-json"
    CONTEXT_WINDOW = "context-window-400"
    NOT_LISTENING = "not-listening"


PROVIDER_FAULTS = frozenset(Fault) - {Fault.RATE_LIMITED, Fault.CONTEXT_WINDOW}
"""Faults of the provider itself, which a breaker counts; a 429 (busy, not broken) and a 400
for the caller's prompt do not count."""

RETRY_AFTER_S = 1
CONTEXT_LENGTH_EXCEEDED = {
    "message": "This model's maximum context length is 8192 tokens. However, your messages "
    "resulted in 9001 tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}
RATE_LIMIT_REACHED = {
    "message": "Rate limit reached for requests. Please try again in 1s.",
    "type": "requests",
    "param": None,
    "code": "rate_limit_exceeded",
}
SERVER_ERROR = {
    "message": "The server had an error while processing your request. Sorry about that!",
    "type": "server_error",
    "param": None,
    "code": None,
}
OVERLOADED = {
    "message": "The engine is currently overloaded, please try again later.",
    "type": "server_error",
    "param": None,
    "code": None,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FaultyUpstream:
    """A fake OpenAI upstream on a fixed loopback port; ``fault`` says how it fails (``None``:
    it answers). ``calls`` counts the chat calls that reached it."""

    def __init__(self, fake: FakeOpenAI | None = None) -> None:
        self.fake = fake or FakeOpenAI(record=False)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.calls = 0
        self._fault: Fault | None = None
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()  # ends every hang

    @property
    def fault(self) -> Fault | None:
        return self._fault

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self.fake.models)
        # A short grace period: a stop must close the connections the gateway keeps open.
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def fail(self, fault: Fault) -> None:
        """Fail every call this way from now on."""
        self._fault = fault
        self._released = asyncio.Event()
        if fault is Fault.NOT_LISTENING:
            await self.stop()

    async def heal(self) -> None:
        """Answer normally again (listening again if it had stopped)."""
        self._fault = None
        self._released.set()
        if self._runner is None:
            await self.start()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        fault = self._fault
        if fault is None:
            return await self.fake.chat_completions(request)
        body = await request.json()
        if fault is Fault.RATE_LIMITED:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            return web.json_response({"error": RATE_LIMIT_REACHED}, status=429, headers=headers)
        if fault is Fault.SERVER_ERROR:
            return web.json_response({"error": SERVER_ERROR}, status=500)
        if fault is Fault.UNAVAILABLE:
            return web.json_response({"error": OVERLOADED}, status=503)
        if fault is Fault.CONTEXT_WINDOW:
            return web.json_response({"error": CONTEXT_LENGTH_EXCEEDED}, status=400)
        if fault is Fault.HANG:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await self._released.wait()
            return web.json_response({"error": SERVER_ERROR}, status=500)
        if fault is Fault.INVALID_JSON:
            if body.get("stream"):
                return await _events(request, [b"data: {'id': chatcmpl-1, choices: [\n\n"])
            return web.Response(
                body=b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"ind',
                content_type="application/json",
            )
        return await _dropped(request, stream=bool(body.get("stream")))


async def _events(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(event)
    await response.write_eof()
    return response


async def _dropped(request: web.Request, *, stream: bool) -> web.StreamResponse:
    """Headers and the start of a body, then the connection closes: a provider that crashed
    while answering. A stream dies before its first event; a whole answer halfway through."""
    if stream:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    else:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 400
    await response.prepare(request)
    if not stream:
        await response.write(b'{"id": "chatcmpl-1", "object": "chat.completion", "choi')
    if request.transport is not None:
        request.transport.close()
    return response
