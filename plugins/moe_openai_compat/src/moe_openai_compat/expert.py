"""The ``openai`` expert: any OpenAI-compatible backend (OpenAI, vLLM, Ollama, llama.cpp, TGI).

One pool of keep-alive connections per expert (``http1.HTTPPool``), opened in ``start`` and
closed in ``close``: a lean HTTP/1.1 client rather than aiohttp's or httpx's, because in front of a
fast upstream the gateway's CPU time per call decides its throughput (``make bench-overhead``
measures all three). Streams are passed through chunk by chunk, never buffered. Upstream
failures become gateway errors a caller can act on: the upstream's own message is kept, the
gateway's credentials are not blamed on the caller (401 upstream is a 502 here), and 429 keeps
its ``Retry-After``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import Field, ValidationError

from moe_core import (
    BaseURL,
    ChatMessage,
    ChatRequest,
    ConfigError,
    Delta,
    Expert,
    ExpertCard,
    ExpertResult,
    ExpertTimeout,
    ExpertUnavailable,
    MoEError,
    Options,
    UpstreamError,
    Usage,
)
from moe_core.errors import upstream_detail, upstream_error
from moe_openai_compat.http1 import HTTPClientError, HTTPPool, ReadTimeout


class OpenAIExpertOptions(Options):
    base_url: BaseURL = Field(description="The API root, e.g. https://api.openai.com/v1")
    model: str | None = Field(None, description="The upstream's model name; default: the expert's")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key")
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0, description="Longest silence while reading")
    max_connections: int = Field(100, ge=1)
    stream_usage: bool = Field(True, description="Ask the upstream for usage in streams")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra non-secret headers")
    system_prompt: str | None = Field(
        None, description="Put first when the request has no system message (a domain expert)"
    )


class OpenAIExpert(Expert):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    options: OpenAIExpertOptions

    def __init__(self, name: str, options: OpenAIExpertOptions) -> None:
        super().__init__(name, options)
        self.upstream_model = options.model or name
        self._headers = {"Content-Type": "application/json", **options.headers}
        if options.api_key_env:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise ConfigError(
                    f"experts.{name}.api_key_env: environment variable "
                    f"{options.api_key_env} is not set"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self._pool: HTTPPool | None = None
        prompt = options.system_prompt
        self._system = ChatMessage(role="system", content=prompt) if prompt else None
        # What _body puts around the request's own members.
        self._model_member = b'{"model":' + orjson.dumps(self.upstream_model) + b","
        usage = b',"stream_options":{"include_usage":true}' if options.stream_usage else b""
        self._stream_members = b',"stream":true' + usage + b"}"

    def card(self) -> ExpertCard:
        return ExpertCard(
            provider=urlsplit(self.options.base_url).hostname or "openai-compatible",
            description=f"{self.upstream_model} at {self.options.base_url}",
        )

    async def start(self) -> None:
        self._pool = HTTPPool(
            self.options.base_url,
            headers=self._headers,
            limit=self.options.max_connections,
            connect_timeout=self.options.connect_timeout_s,
            read_timeout=self.options.read_timeout_s,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        """The upstream's JSON body: the request as the caller sent it (unset values left out,
        unknown OpenAI parameters kept) under the upstream's model name.

        pydantic writes the request's JSON itself, and the few members that differ upstream are
        spliced around it: building a dict first and encoding that costs three times as much,
        on every call. It also writes any integer a caller sent in an unknown parameter, where
        orjson refuses those over 64 bits: the upstream, not the gateway, judges such a value.
        """
        if self._system is not None and not any(
            m.role in ("system", "developer") for m in request.messages
        ):
            request = request.model_copy(update={"messages": [self._system, *request.messages]})
        # ``messages`` is required, so the object always has members to splice after.
        members = _request_json(request, exclude_none=True, exclude=_NOT_FORWARDED)[1:-1]
        return b"".join((self._model_member, members, self._stream_members if stream else b"}"))

    def _pool_or_fail(self) -> HTTPPool:
        if self._pool is None:
            raise ExpertUnavailable(f"expert {self.name!r} is not started")
        return self._pool

    async def generate(self, request: ChatRequest) -> ExpertResult:
        pool = self._pool_or_fail()
        try:
            answer, raw = await pool.post(_PATH, self._body(request, stream=False))
        except HTTPClientError as exc:
            raise self._connection_error(exc) from None
        if answer.status >= 400:
            raise self._error(answer.status, raw, answer.headers)
        try:
            payload = orjson.loads(raw)
            choice = payload["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError(
                f"expert {self.name!r}: the upstream answered something that is not a chat "
                f"completion: {raw[:200]!r}"
            ) from None
        usage = payload.get("usage")
        fields = {
            "content": message.get("content") or "",
            "reasoning_content": message.get("reasoning_content"),
            "tool_calls": message.get("tool_calls"),
            "finish_reason": choice.get("finish_reason") or "stop",
            # OpenAI's usage object as it came, validated with the answer in one pass; one that
            # lacks a total is completed by hand.
            "usage": usage if type(usage) is dict and "total_tokens" in usage else _usage(usage),
            "model": payload.get("model"),
        }
        try:
            return _validate_result(fields)
        except ValidationError:
            if fields["usage"] is not usage:
                raise
        # Usage with nulls or other oddities some servers send: read leniently, as streams are.
        fields["usage"] = _usage(usage)
        return _validate_result(fields)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        pool = self._pool_or_fail()
        try:
            async with pool.stream(_PATH, self._body(request, stream=True)) as answer:
                if answer.status >= 400:
                    raise self._error(answer.status, await answer.read(), answer.headers)
                async for line in answer.lines():
                    delta = self._parse_event(line)
                    if delta is _DONE:
                        return
                    if delta is not None:
                        yield delta
        except HTTPClientError as exc:
            raise self._connection_error(exc) from None

    def _parse_event(self, line: bytes) -> Delta | object | None:
        if not line.startswith(b"data:"):
            return None  # blank separators, comments, "event:" lines
        data = line[5:].strip()
        if data == b"[DONE]":
            return _DONE
        try:
            chunk = orjson.loads(data)
        except ValueError:
            raise UpstreamError(
                f"expert {self.name!r}: unreadable stream event {data[:200]!r}"
            ) from None
        if "error" in chunk:
            raise UpstreamError(f"expert {self.name!r}: {upstream_detail(data)}")
        choices = chunk.get("choices") or []
        delta = choices[0].get("delta") or {} if choices else {}
        return Delta(
            content=delta.get("content"),
            reasoning_content=delta.get("reasoning_content"),
            tool_calls=delta.get("tool_calls"),
            finish_reason=choices[0].get("finish_reason") if choices else None,
            usage=_usage(chunk.get("usage")),
            model=chunk.get("model"),
        )

    def _error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> MoEError:
        where = f"expert {self.name!r} (upstream {self.options.base_url}, status {status})"
        return upstream_error(where, status, raw, headers, credentials="api_key_env")

    def _connection_error(self, exc: HTTPClientError) -> MoEError:
        if isinstance(exc, ReadTimeout):
            return ExpertTimeout(f"expert {self.name!r}: the upstream stopped answering: {exc}")
        return ExpertUnavailable(
            f"expert {self.name!r}: cannot reach the upstream at {self.options.base_url}: {exc}"
        )


_DONE = object()
_PATH = "/chat/completions"
# The request's members that are the gateway's business, or that _body sets for the upstream.
# A set, not a frozenset: pydantic takes a set's fast path and walks a frozenset item by item.
_NOT_FORWARDED = {"model", "moe", "stream", "stream_options"}
_request_json = ChatRequest.__pydantic_serializer__.to_json
_validate_result = ExpertResult.__pydantic_validator__.validate_python


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage.of(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
