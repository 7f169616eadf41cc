"""The ``openai`` expert: any OpenAI-compatible backend (OpenAI, vLLM, Ollama, llama.cpp, TGI).

One pool of keep-alive connections per expert (``http1.HTTPPool``), opened in ``start`` and
closed in ``close``: a lean HTTP/1.1 client rather than aiohttp's or httpx's, because in front of a
fast upstream the gateway's CPU time per call decides its throughput (``make bench-overhead``
measures all three). Streams are passed through chunk by chunk, never buffered; what the
upstream answers beyond the canonical fields (logprobs, refusals, n choices...) is kept for the
OpenAI frontend (``reading``). Upstream failures become gateway errors a caller can act on: the
upstream's own message is kept, the gateway's credentials are not blamed on the caller (401
upstream is a 502 here), a ``Retry-After`` is kept (the circuit breaker cools the expert down
for that long), and no message names the upstream's address (the log does, for operators).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import structlog
from pydantic import ValidationError

from moe_core import (
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
    UpstreamError,
)
from moe_core.errors import upstream_detail, upstream_error
from moe_core.http import UPSTREAM_HEADERS
from moe_openai_compat.embeddings import UPSTREAM_PATH, upstream_request, upstream_vectors
from moe_openai_compat.expert_options import OpenAIExpertOptions
from moe_openai_compat.http1 import (
    Disconnected,
    HTTPClientError,
    HTTPPool,
    PoolTimeout,
    ReadTimeout,
)
from moe_openai_compat.proxy import proxy_for
from moe_openai_compat.reading import chunk_deltas, coalesced, merged, result_fields, usage

__all__ = ["OpenAIExpert", "OpenAIExpertOptions"]
log = structlog.get_logger(__name__)


class OpenAIExpert(Expert):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    options: OpenAIExpertOptions

    def __init__(self, name: str, options: OpenAIExpertOptions) -> None:
        super().__init__(name, options)
        self.upstream_model = options.model or name
        self._headers = {"Content-Type": "application/json", **options.headers}
        for header, variable in options.headers_env.items():
            self._headers[header] = _secret(f"experts.{name}.headers_env.{header}", variable)
        self._url, self._query = options.base_url, dict(options.query)
        azure = options.azure
        if azure is not None:
            self._url += f"/openai/deployments/{quote(azure.deployment, safe='')}"
            self._query = {"api-version": azure.api_version, **self._query}
        if options.api_key_env:
            key = _secret(f"experts.{name}.api_key_env", options.api_key_env)
            if azure is not None:
                self._headers["api-key"] = key
            else:
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
            # Passed through as sent: the upstream model answers for what it cannot do (a 400),
            # so none is refused here; a config's `card:` narrows it (`supports_vision: false`).
            supports_tools=True,
            supports_json=True,
            supports_vision=True,
            capabilities=["logprobs", "penalties", "choices"],
        )

    async def start(self) -> None:
        options = self.options
        proxy = proxy_for(self._url, options.proxy)
        if proxy is not None:
            log.info("openai.proxy", expert=self.name, proxy=proxy.address)
        self._pool = HTTPPool(
            self._url,
            headers=self._headers,
            query=self._query,
            limit=options.max_connections,
            connect_timeout=options.connect_timeout_s,
            first_byte_timeout=options.first_byte_timeout_s,
            read_timeout=options.read_timeout_s,
            pool_timeout=options.pool_timeout_s,
            proxy=proxy,
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
        wanted = request.n or 1
        if wanted > 1 and not self.options.supports_n:
            payload = merged(await _all([self._complete(_one(request)) for _ in range(wanted)]))
        else:
            payload = await self._complete(request)
            missing = wanted - len(payload["choices"])
            if missing > 0:  # an upstream that ignores n: the other choices from calls of their own
                more = await _all([self._complete(_one(request)) for _ in range(missing)])
                payload = merged([payload, *more])
        fields = result_fields(payload)
        raw_usage = payload.get("usage")
        # OpenAI's usage object as it came, validated with the answer in one pass; one that
        # lacks a total is completed by hand.
        fields["usage"] = (
            raw_usage
            if type(raw_usage) is dict and "total_tokens" in raw_usage
            else usage(raw_usage)
        )
        try:
            return _validate_result(fields)
        except ValidationError:
            if fields["usage"] is not raw_usage:
                raise
        # Usage with nulls or other oddities some servers send: read leniently, as streams are.
        fields["usage"] = usage(raw_usage)
        return _validate_result(fields)

    async def _complete(self, request: ChatRequest) -> dict[str, Any]:
        """One call for a complete answer: the upstream's chat completion, its shape checked."""
        pool = self._pool_or_fail()
        try:
            body = self._body(request, stream=False)
            answer, raw = await pool.post(_PATH, body, UPSTREAM_HEADERS.get())
        except HTTPClientError as exc:
            raise self._connection_error(exc) from None
        if answer.status >= 400:
            raise self._error(answer.status, raw, answer.headers)
        try:
            payload = orjson.loads(raw)
            if not isinstance(payload["choices"][0]["message"], dict):
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError(
                f"expert {self.name!r}: the upstream answered something that is not a chat "
                f"completion: {raw[:200]!r}"
            ) from None
        return payload

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        wanted = request.n or 1
        if wanted > 1 and not self.options.supports_n:
            streams = [self._stream(_one(request), index) for index in range(wanted)]
            async for delta in _interleaved(streams):
                yield delta
            return
        async for delta in self._stream(request):
            yield delta

    async def _stream(self, request: ChatRequest, index: int = 0) -> AsyncIterator[Delta]:
        """One streamed call; its choices numbered from ``index`` on."""
        pool = self._pool_or_fail()
        chunks = 0
        try:
            body = self._body(request, stream=True)
            async with pool.stream(_PATH, body, UPSTREAM_HEADERS.get()) as answer:
                if answer.status >= 400:
                    raise self._error(answer.status, await answer.read(), answer.headers)
                async for lines in answer.lines():
                    events: list[dict[str, Any]] = []
                    end: object = None  # _DONE, or the error a bad event is
                    for line in lines:
                        try:
                            event = self._parse_event(line)
                        except UpstreamError as exc:
                            end = exc
                            break
                        if event is _DONE:
                            end = _DONE
                            break
                        if event is not None:
                            events.append(event)  # type: ignore[arg-type]
                    chunks += len(events)
                    for chunk in coalesced(events):  # what came before the end goes first
                        for delta in chunk_deltas(chunk, index):
                            yield delta
                    if isinstance(end, UpstreamError):
                        raise end
                    if end is _DONE:
                        return
        except HTTPClientError as exc:
            raise self._connection_error(exc, chunks=chunks) from None

    def _parse_event(self, line: bytes) -> dict[str, Any] | object | None:
        """A ``data:`` line's chunk, ``_DONE`` for the end, None for any other line."""
        if not line.startswith(b"data:"):
            return None  # blank separators, comments, "event:" lines
        data = line[5:].strip()
        if data == b"[DONE]":
            return _DONE
        try:
            chunk = orjson.loads(data)
            if type(chunk) is not dict:
                raise ValueError
        except ValueError:
            raise UpstreamError(
                f"expert {self.name!r}: unreadable stream event {data[:200]!r}"
            ) from None
        if "error" in chunk:
            raise UpstreamError(f"expert {self.name!r}: {upstream_detail(data)}")
        return chunk

    def _error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> MoEError:
        log.warning("openai.upstream_error", expert=self.name, url=self._url, status=status)
        where = f"expert {self.name!r} (upstream status {status})"
        error = upstream_error(where, status, raw, headers, credentials="api_key_env")
        retry_after = _retry_after(headers)
        if retry_after and (status == 429 or status >= 500):
            error.headers.setdefault("Retry-After", retry_after)
        return error

    def _connection_error(self, exc: HTTPClientError, *, chunks: int = 0) -> MoEError:
        log.warning("openai.upstream_failed", expert=self.name, url=self._url, error=str(exc))
        name = self.name
        if isinstance(exc, ReadTimeout):
            option = "read_timeout_s" if exc.started else "first_byte_timeout_s"
            return ExpertTimeout(f"expert {name!r}: {exc} ({option})")
        if isinstance(exc, PoolTimeout):
            return ExpertUnavailable(
                f"expert {name!r} is busy: {exc} (max_connections, pool_timeout_s); retry shortly",
                code="expert_busy",
                headers={"Retry-After": "1"},
            )
        if isinstance(exc, Disconnected) and exc.midway:
            streamed = f" after {chunks} chunks of a stream" if chunks else ""
            return UpstreamError(f"expert {name!r}: {exc}{streamed}; the answer is incomplete")
        return ExpertUnavailable(f"expert {name!r}: cannot reach its upstream: {exc}")

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """Vectors from the upstream's own ``/embeddings``, for ``POST /v1/embeddings``
        (:class:`moe_openai_compat.embeddings.Embedder`); ``dimensions`` is the upstream's call."""
        pool = self._pool_or_fail()
        body = upstream_request(self.upstream_model, texts, dimensions)
        try:
            answer, raw = await pool.post(UPSTREAM_PATH, body)
        except HTTPClientError as exc:
            raise self._connection_error(exc) from None
        if answer.status >= 400:
            raise self._error(answer.status, raw, answer.headers)
        return upstream_vectors(raw, len(texts), where=f"expert {self.name!r}")


_DONE = object()
_PATH = "/chat/completions"
# The request's members that are the gateway's business, or that _body sets for the upstream.
# A set, not a frozenset: pydantic takes a set's fast path and walks a frozenset item by item.
_NOT_FORWARDED = {"model", "moe", "stream", "stream_options"}
_request_json = ChatRequest.__pydantic_serializer__.to_json
_validate_result = ExpertResult.__pydantic_validator__.validate_python


def _secret(key_path: str, variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"{key_path}: environment variable {variable} is not set")
    return value


def _one(request: ChatRequest) -> ChatRequest:
    """The request for one of n separate calls that make n choices."""
    return request.model_copy(update={"n": None})


def _retry_after(headers: Mapping[str, str]) -> str | None:
    """An upstream's ``Retry-After``, or Azure's ``retry-after-ms`` in whole seconds."""
    value = headers.get("retry-after")
    if value:
        return value
    milliseconds = headers.get("retry-after-ms")
    try:
        return str(max(1, math.ceil(float(milliseconds) / 1000))) if milliseconds else None
    except ValueError:
        return None


async def _all(calls: list[Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every call's answer, made at once; the first failure stops the others."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def _interleaved(streams: list[AsyncIterator[Delta]]) -> AsyncIterator[Delta]:
    """Several streams' deltas as they come, their usage added up into one last delta (the
    caller reads a stream's usage from its last delta that has one)."""
    queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[Delta]) -> None:
        try:
            async for delta in stream:
                await queue.put(delta)
        except Exception as exc:
            await queue.put(exc)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    total = None
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            elif item.usage is not None:
                total = item.usage if total is None else total + item.usage
                if item.content or item.tool_calls or item.finish_reason:
                    yield item.model_copy(update={"usage": None})
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if total is not None:
        yield Delta(usage=total)
