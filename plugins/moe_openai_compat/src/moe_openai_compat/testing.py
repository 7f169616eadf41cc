"""A faithful local fake of an OpenAI-compatible server, for tests and benchmarks.

It speaks the real wire format (``chat.completion``, SSE ``chat.completion.chunk`` frames ending
in ``data: [DONE]``, the error envelope) on loopback, answers deterministically, and can be told
to fail the ways real upstreams fail: an error status, a 429 with ``Retry-After``, slowness, a
stream that dies midway. Every request it received is kept in ``requests`` so a test can check
what the gateway really sent.

Run it alone with ``python -m moe_openai_compat.testing --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeBehaviour:
    """How the fake answers; tests change it between requests."""

    reply: str | None = None  # default: "echo: <last user message>"
    status: int | None = None  # answer every request with this error status
    retry_after: str | None = None
    delay_s: float = 0.0  # before the answer (or its first chunk)
    chunk_delay_s: float = 0.0
    die_after_chunks: int | None = None  # close the stream abruptly after this many chunks
    api_key: str | None = None  # require "Authorization: Bearer <api_key>"
    model_name: str | None = None  # what it reports in "model"; default: what was asked
    usage: Any = None  # what it reports as "usage"; default: words counted, all three totals


@dataclass
class FakeOpenAI:
    behaviour: FakeBehaviour = field(default_factory=FakeBehaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    record: bool = True

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None):
        kind = {401: "invalid_request_error", 429: "requests"}.get(status, "server_error")
        return web.json_response(
            {"error": {"message": message, "type": kind, "param": None, "code": None}},
            status=status,
            headers=headers,
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        behaviour = self.behaviour
        body = await request.json()
        if self.record:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        expected_auth = f"Bearer {behaviour.api_key}"
        if behaviour.api_key is not None and request.headers.get("Authorization") != expected_auth:
            return self._error(401, "Incorrect API key provided.")
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.status is not None:
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else None
            return self._error(behaviour.status, f"fake upstream error {behaviour.status}", headers)
        messages = body.get("messages") or [{}]
        last = messages[-1].get("content") or ""
        reply = behaviour.reply if behaviour.reply is not None else f"echo: {last}"
        model = behaviour.model_name or body.get("model", "fake-model")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        words = reply.split(" ")
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        usage = self.behaviour.usage or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        created = int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def frame(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        await response.write(frame({"role": "assistant", "content": ""}))
        for index, word in enumerate(words):
            if behaviour.die_after_chunks is not None and index >= behaviour.die_after_chunks:
                # An abrupt end: no finish_reason, no [DONE], the connection just closes.
                request.transport.close() if request.transport else None
                return response
            if index and behaviour.chunk_delay_s:
                await asyncio.sleep(behaviour.chunk_delay_s)
            await response.write(frame({"content": word if index == 0 else " " + word}))
        await response.write(frame({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--reply", default=None, help="fixed answer (default: echo)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    fake = FakeOpenAI(behaviour=FakeBehaviour(reply=args.reply, delay_s=args.delay), record=False)
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(fake.app(), host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
