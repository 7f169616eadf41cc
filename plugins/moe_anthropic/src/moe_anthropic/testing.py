"""A faithful local fake of Anthropic's Messages API, for tests and benchmarks.

It speaks the real wire format on loopback: ``message`` objects, server-sent events with their
``event:`` lines (``message_start``, ``content_block_start``, ``ping``, ``text_delta`` and
``input_json_delta`` deltas, ``content_block_stop``, ``message_delta``, ``message_stop``), the
``x-api-key`` and ``anthropic-version`` headers, and ``{"type": "error", ...}`` bodies. It answers
deterministically: ``echo: <last user text>``; with tools, a short text and a ``tool_use`` of the
first tool (its string properties filled with the user's text); after a ``tool_result``,
``tool said: <result>``. Stop sequences, ``max_tokens`` and ``tool_choice`` act as Anthropic's do.
It can fail the ways the real one fails: an error status, 429 or 529 with ``Retry-After``, an
``error`` event mid-stream, a connection dropped mid-stream. Every request is kept in
``requests`` (and its headers in ``headers``) so tests can check what the gateway sent.

Run it alone with ``python -m moe_anthropic.testing --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from moe_anthropic.errors import envelope


@dataclass
class FakeBehaviour:
    """How the fake answers; tests change it between requests."""

    reply: str | None = None  # default: "echo: <last user text>"
    status: int | None = None  # answer every request with this error status
    retry_after: str | None = None
    delay_s: float = 0.0  # before the answer (or its first event)
    api_key: str | None = None  # require "x-api-key: <api_key>"
    model_name: str | None = None  # what it reports in "model"; default: what was asked
    error_after_chunks: int | None = None  # stream: an "error" event after this many text deltas
    die_after_chunks: int | None = None  # stream: drop the connection after this many deltas
    thinking: str | None = None  # a thinking block before the answer, as extended thinking gives


@dataclass
class FakeAnthropic:
    behaviour: FakeBehaviour = field(default_factory=FakeBehaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    record: bool = True

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        return app

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(
            envelope(status, message, "req_fake"), status=status, headers=headers
        )

    async def messages(self, request: web.Request) -> web.StreamResponse:
        behaviour = self.behaviour
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "The request body is not valid JSON")
        if self.record:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        if behaviour.api_key is not None and request.headers.get("x-api-key") != behaviour.api_key:
            return self._error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._error(400, "anthropic-version: header is required")
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                return self._error(400, f"{required}: Field required")
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.status is not None:
            headers = {"retry-after": behaviour.retry_after} if behaviour.retry_after else None
            return self._error(behaviour.status, f"fake upstream error {behaviour.status}", headers)
        answer = self._answer(body)
        if not body.get("stream"):
            return web.json_response(answer)
        return await self._stream(request, answer)

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The complete ``message`` the fake gives for a request."""
        messages = body["messages"]
        last = messages[-1]
        blocks = _blocks(last["content"])
        results = [b for b in blocks if b.get("type") == "tool_result"]
        text = " ".join(b["text"] for b in blocks if b.get("type") == "text")
        content: list[dict[str, Any]] = []
        stop_reason, stop_sequence = "end_turn", None
        tool = _tool_to_call(body) if not results else None
        if results:
            reply = "tool said: " + " ".join(_result_text(b) for b in results)
        elif self.behaviour.reply is not None:
            reply = self.behaviour.reply
        elif tool is not None:
            reply = f"Calling {tool['name']}."
        else:
            reply = f"echo: {text}"
        for sequence in body.get("stop_sequences") or ():
            if sequence in reply:
                reply, stop_reason, stop_sequence = (
                    reply.split(sequence)[0],
                    "stop_sequence",
                    sequence,
                )
                tool = None
        words = reply.split(" ")
        if len(words) > body["max_tokens"]:
            words, stop_reason, tool = words[: body["max_tokens"]], "max_tokens", None
        if self.behaviour.thinking is not None:
            thought = {"type": "thinking", "thinking": self.behaviour.thinking, "signature": "sig"}
            content.append(thought)
        if any(words):
            content.append({"type": "text", "text": " ".join(words)})
        if tool is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_fake{len(messages)}",
                    "name": tool["name"],
                    "input": _fill(tool.get("input_schema") or {}, text),
                }
            )
            stop_reason = "tool_use"
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.behaviour.model_name or body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {"input_tokens": _count_words(body), "output_tokens": len(words)},
        }

    async def _stream(self, request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
        behaviour = self.behaviour
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(kind: str, **data: Any) -> None:
            frame = json.dumps({"type": kind, **data})
            await response.write(f"event: {kind}\ndata: {frame}\n\n".encode())

        start = {**answer, "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = {"input_tokens": answer["usage"]["input_tokens"], "output_tokens": 1}
        await send("message_start", message=start)
        await send("ping")
        sent = 0
        for index, block in enumerate(answer["content"]):
            opening, deltas = _pieces(block)
            await send("content_block_start", index=index, content_block=opening)
            for delta in deltas:
                if _reached(behaviour.error_after_chunks, sent):
                    await send("error", error=envelope(529, "Overloaded")["error"])
                    return response
                if _reached(behaviour.die_after_chunks, sent):
                    # An abrupt end: no message_stop, the connection just closes.
                    if request.transport is not None:
                        request.transport.close()
                    return response
                await send("content_block_delta", index=index, delta=delta)
                sent += 1
            await send("content_block_stop", index=index)
        stop = {"stop_reason": answer["stop_reason"], "stop_sequence": answer["stop_sequence"]}
        await send(
            "message_delta", delta=stop, usage={"output_tokens": answer["usage"]["output_tokens"]}
        )
        await send("message_stop")
        return response


def _pieces(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A content block as it starts in a stream, and the deltas that complete it: text word by
    word; thinking, then its signature; a tool's input as fragments of JSON cut anywhere, as
    Anthropic sends it."""
    if block["type"] == "text":
        words = block["text"].split(" ")
        texts = [word if position == 0 else " " + word for position, word in enumerate(words)]
        return {"type": "text", "text": ""}, [{"type": "text_delta", "text": t} for t in texts]
    if block["type"] == "thinking":
        deltas = [
            {"type": "thinking_delta", "thinking": block["thinking"]},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
        return {"type": "thinking", "thinking": "", "signature": ""}, deltas
    arguments = json.dumps(block["input"])
    middle = len(arguments) // 2
    pieces = (arguments[:middle], arguments[middle:])
    return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": p} for p in pieces]


def _reached(limit: int | None, sent: int) -> bool:
    return limit is not None and sent >= limit


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _result_text(block: dict[str, Any]) -> str:
    return " ".join(b.get("text", "") for b in _blocks(block.get("content") or ""))


def _tool_to_call(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return next((tool for tool in tools if tool["name"] == choice.get("name")), None)
    return tools[0]


def _fill(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments matching a tool's schema: strings get the user's text, numbers its length."""
    values = {"string": text, "integer": len(text.split()), "number": float(len(text.split()))}
    properties = schema.get("properties") or {}
    return {name: values.get(spec.get("type"), True) for name, spec in properties.items()}


def _count_words(body: dict[str, Any]) -> int:
    system = body.get("system") or ""
    if isinstance(system, list):
        system = " ".join(block.get("text", "") for block in system)
    words = len(system.split())
    for message in body["messages"]:
        for block in _blocks(message["content"]):
            words += len(str(block.get("text") or block.get("content") or "").split())
    return words


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Anthropic Messages API on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--reply", default=None, help="fixed answer (default: echo)")
    args = parser.parse_args()
    fake = FakeAnthropic(behaviour=FakeBehaviour(reply=args.reply), record=False)
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(fake.app(), host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
