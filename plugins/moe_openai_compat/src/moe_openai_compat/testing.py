"""A faithful local fake of an OpenAI-compatible server, for tests and benchmarks.

It speaks the real wire format (``chat.completion``, SSE ``chat.completion.chunk`` frames ending
in ``data: [DONE]``, the error envelope) on loopback, answers deterministically, and can be told
to fail the ways real upstreams fail: an error status, a 429 with ``Retry-After``, slowness (a
hang before the first byte, or between chunks), a stream that dies midway. It answers as OpenAI
does: ``system_fingerprint``, ``service_tier``, ``refusal`` and ``annotations`` members,
``logprobs`` when asked (``top_logprobs`` of them), ``n`` choices (unless told to ignore ``n``,
as some servers do), a tool call with ``content: null`` when told to call the offered tool, a
refusal. It also serves Azure OpenAI's deployment paths (``api-version`` required, the key in
``api-key``). Every request it received is kept in ``requests`` (its path and query in ``paths``,
its headers in ``headers``) so a test can check what the gateway really sent.

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
    retry_after_ms: str | None = None  # Azure's header, beside or instead of Retry-After
    delay_s: float = 0.0  # before the answer (or its first chunk): nothing at all is sent
    chunk_delay_s: float = 0.0
    die_after_chunks: int | None = None  # close the stream abruptly after this many chunks
    api_key: str | None = None  # require "Authorization: Bearer <api_key>" (Azure: "api-key")
    model_name: str | None = None  # what it reports in "model"; default: what was asked
    usage: Any = None  # what it reports as "usage"; default: words counted, all three totals
    tool_arguments: str | None = None  # call the first offered tool with these arguments
    refusal: str | None = None  # refuse: content null, this refusal
    supports_n: bool = True  # False: one choice whatever n asks, as some servers do


@dataclass
class FakeOpenAI:
    behaviour: FakeBehaviour = field(default_factory=FakeBehaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    record: bool = True

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post(
            "/openai/deployments/{deployment}/chat/completions", self.chat_completions
        )
        app.router.add_get("/v1/models", self.models)
        return app

    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        if self.record:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            self.paths.append(request.path_qs)

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

    def _refused(self, request: web.Request) -> web.Response | None:
        """The answer to a request without the right credentials (or, on Azure's paths,
        without an ``api-version``), else ``None``."""
        key = self.behaviour.api_key
        if "deployment" in request.match_info:  # Azure OpenAI
            if "api-version" not in request.query:
                return self._error(404, "Resource not found")
            if key is not None and request.headers.get("api-key") != key:
                return self._error(401, "Access denied due to invalid subscription key.")
            return None
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            return self._error(401, "Incorrect API key provided.")
        return None

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        behaviour = self.behaviour
        body = await request.json()
        self._record(request, body)
        refused = self._refused(request)
        if refused is not None:
            return refused
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.status is not None:
            headers = {}
            if behaviour.retry_after:
                headers["Retry-After"] = behaviour.retry_after
            if behaviour.retry_after_ms:
                headers["retry-after-ms"] = behaviour.retry_after_ms
            return self._error(behaviour.status, f"fake upstream error {behaviour.status}", headers)
        messages = body.get("messages") or [{}]
        last = messages[-1].get("content") or ""
        reply = behaviour.reply if behaviour.reply is not None else f"echo: {last}"
        answer = _Answer(body, reply, behaviour)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(answer.words) * answer.n
        usage = behaviour.usage or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        head = {
            "id": "chatcmpl-fake",
            "created": int(time.time()),
            "model": behaviour.model_name or body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
        }
        if not body.get("stream"):
            choices = [answer.choice(index) for index in range(answer.n)]
            return web.json_response(
                {**head, "object": "chat.completion", "choices": choices, "usage": usage}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        for position, deltas in enumerate(answer.deltas()):
            if behaviour.die_after_chunks is not None and position > behaviour.die_after_chunks:
                # An abrupt end: no finish_reason, no [DONE], the connection just closes.
                request.transport.close() if request.transport else None
                return response
            if position > 1 and behaviour.chunk_delay_s:
                await asyncio.sleep(behaviour.chunk_delay_s)
            for choice in deltas:  # one chunk per choice, as OpenAI streams n choices
                await send([choice])
        if (body.get("stream_options") or {}).get("include_usage"):
            await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        return response


class _Answer:
    """What the fake answers a request: its words, tool call or refusal, in n choices."""

    def __init__(self, body: dict[str, Any], reply: str, behaviour: FakeBehaviour) -> None:
        self.n = int(body.get("n") or 1) if behaviour.supports_n else 1
        self.words = reply.split(" ")
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        self.finish = "stop"
        if limit is not None and len(self.words) > limit:
            self.words, self.finish = self.words[:limit], "length"
        self.logprobs = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
        self.refusal = behaviour.refusal
        tools = body.get("tools") or []
        answered = body["messages"][-1].get("role") == "tool"  # the tool's result came back
        self.call: dict[str, Any] | None = None
        if tools and behaviour.tool_arguments is not None and not answered:
            name = tools[0]["function"]["name"]
            self.call = {"id": "call_fake_1", "type": "function", "function": {"name": name}}
            self.arguments = behaviour.tool_arguments
            self.finish = "tool_calls"

    def _logprobs(self, words: list[str]) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        entries = []
        for word in words:
            top = [
                {"token": word + "~" * rank, "logprob": -0.5 * (rank + 1), "bytes": None}
                for rank in range(self.logprobs)
            ]
            entries.append(
                {"token": word, "logprob": -0.5, "bytes": list(word.encode()), "top_logprobs": top}
            )
        return {"content": entries, "refusal": None}

    def choice(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(self.words)}
        message.update(refusal=None, annotations=[])
        logprobs = self._logprobs(self.words)
        if self.call is not None:
            call = {**self.call, "function": {**self.call["function"], "arguments": self.arguments}}
            message.update(content=None, tool_calls=[call])
            logprobs = None
        elif self.refusal is not None:
            message.update(content=None, refusal=self.refusal)
            logprobs = None
        return {
            "index": index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": self.finish,
        }

    def deltas(self) -> list[list[dict[str, Any]]]:
        """The stream's chunks, each as the choices' deltas at that point."""
        steps: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
        if self.call is not None:
            steps[0]["content"] = None
            function = {"name": self.call["function"]["name"], "arguments": ""}
            steps[0]["tool_calls"] = [{"index": 0, **self.call, "function": function}]
            third = max(1, len(self.arguments) // 3)
            for start in range(0, len(self.arguments), third):
                piece = self.arguments[start : start + third]
                steps.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        elif self.refusal is not None:
            steps += [{"refusal": piece} for piece in _pieces(self.refusal)]
        else:
            steps += [{"content": piece} for piece in _pieces(" ".join(self.words))]
        chunks = []
        for step in steps:
            chunk = []
            for index in range(self.n):
                choice = {"index": index, "delta": step, "logprobs": None, "finish_reason": None}
                if "content" in step and step["content"] and self.logprobs is not None:
                    choice["logprobs"] = self._logprobs([step["content"].strip()])
                chunk.append(choice)
            chunks.append(chunk)
        last = {"delta": {}, "logprobs": None, "finish_reason": self.finish}
        chunks.append([{"index": index, **last} for index in range(self.n)])
        return chunks


def _pieces(text: str) -> list[str]:
    """A text in word-sized pieces, spaces kept before each word after the first."""
    words = text.split(" ")
    return [word if index == 0 else " " + word for index, word in enumerate(words)]


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
