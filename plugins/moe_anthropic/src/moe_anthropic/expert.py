"""The ``anthropic`` expert: a model behind an Anthropic-compatible ``/v1/messages`` endpoint.

It speaks Anthropic's native wire format (so ``/v1/chat/completions`` callers reach Claude-style
backends with tools, images and streaming intact), over one aiohttp session of keep-alive
connections per expert, opened in ``start`` and closed in ``close``. Streams are passed on event
by event, never buffered. Upstream failures become the core's errors: a caller's mistake stays a
4xx that no breaker counts, the gateway's credentials are never blamed on the caller, and 429
and 529 keep their ``Retry-After``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import Field

from moe_anthropic.errors import from_upstream
from moe_anthropic.upstream import EventReader, request_body, result
from moe_core import (
    BaseURL,
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
)
from moe_core.errors import upstream_detail


class AnthropicExpertOptions(Options):
    base_url: BaseURL = Field(
        "https://api.anthropic.com",
        description="The API root; requests go to <base_url>/v1/messages",
    )
    model: str | None = Field(None, description="The upstream's model name; default: the expert's")
    api_key_env: str | None = Field(
        "ANTHROPIC_API_KEY", description="Environment variable holding the key (sent as x-api-key)"
    )
    anthropic_version: str = Field("2023-06-01", description="The anthropic-version header")
    max_tokens: int = Field(
        4096,
        ge=1,
        description="The answer's limit when the request sets none (Anthropic needs one)",
    )
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0, description="Longest silence while reading")
    max_connections: int = Field(100, ge=1)
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra non-secret headers (anthropic-beta)"
    )
    system_prompt: str | None = Field(
        None, description="Used when the request has no system message (a domain expert)"
    )


class AnthropicExpert(Expert):
    """A model behind an Anthropic-compatible Messages API."""

    options: AnthropicExpertOptions

    def __init__(self, name: str, options: AnthropicExpertOptions) -> None:
        super().__init__(name, options)
        self.upstream_model = options.model or name
        self._url = f"{options.base_url}/v1/messages"
        self._headers = {
            "Content-Type": "application/json",
            "anthropic-version": options.anthropic_version,
            **options.headers,
        }
        if options.api_key_env:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise ConfigError(
                    f"experts.{name}.api_key_env: environment variable "
                    f"{options.api_key_env} is not set (set api_key_env: null for none)"
                )
            self._headers["x-api-key"] = key
        self._session: aiohttp.ClientSession | None = None

    def card(self) -> ExpertCard:
        return ExpertCard(
            provider=urlsplit(self.options.base_url).hostname or "anthropic",
            description=f"{self.upstream_model} at {self.options.base_url} (Anthropic API)",
            modalities_in=["text", "image"],
            supports_tools=True,
            supports_vision=True,
            supports_json=True,
        )

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            connector=aiohttp.TCPConnector(limit=self.options.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.options.connect_timeout_s,
                sock_read=self.options.read_timeout_s,
            ),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        return orjson.dumps(
            request_body(
                request,
                model=self.upstream_model,
                max_tokens=self.options.max_tokens,
                system_prompt=self.options.system_prompt,
                stream=stream,
            )
        )

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ExpertUnavailable(f"expert {self.name!r} is not started")
        return self._session

    async def generate(self, request: ChatRequest) -> ExpertResult:
        session = self._session_or_fail()
        body = self._body(request, stream=False)
        with self._connection_errors():
            async with session.post(self._url, data=body) as answer:
                raw = await answer.read()
                if answer.status >= 400:
                    raise self._error(answer.status, raw, answer.headers)
        try:
            return result(orjson.loads(raw))
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError(
                f"expert {self.name!r}: the upstream answered something that is not a "
                f"message: {raw[:200]!r}"
            ) from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        session = self._session_or_fail()
        body = self._body(request, stream=True)
        reader = EventReader()
        with self._connection_errors():
            async with session.post(self._url, data=body) as answer:
                if answer.status >= 400:
                    raise self._error(answer.status, await answer.read(), answer.headers)
                async for data in _event_data(answer.content):
                    delta = self._read(reader, data)
                    if delta is not None:
                        yield delta
                    if reader.done:
                        return
        if not reader.done:
            raise UpstreamError(f"expert {self.name!r}: the stream ended before message_stop")

    def _read(self, reader: EventReader, data: bytes) -> Delta | None:
        try:
            event = orjson.loads(data)
            if event["type"] == "error":
                raise UpstreamError(
                    f"expert {self.name!r}: the upstream failed mid-stream: {upstream_detail(data)}"
                )
            return reader.read(event)
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError(
                f"expert {self.name!r}: unreadable stream event {data[:200]!r}"
            ) from None

    def _error(self, status: int, raw: bytes, headers: Any) -> MoEError:
        where = f"expert {self.name!r} (upstream {self.options.base_url}, status {status})"
        return from_upstream(where, status, raw, headers, model_option=f"experts.{self.name}.model")

    @contextmanager
    def _connection_errors(self) -> Iterator[None]:
        """Connection failures as the core's errors: a silence longer than ``read_timeout_s``
        is a timeout (504), anything else (refused, reset, no connection in time) means the
        upstream cannot be reached (503)."""
        try:
            yield
        except aiohttp.ConnectionTimeoutError as exc:
            raise self._unreachable(exc) from None
        except TimeoutError:
            raise ExpertTimeout(
                f"expert {self.name!r}: the upstream was silent for more than "
                f"{self.options.read_timeout_s} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> MoEError:
        return ExpertUnavailable(
            f"expert {self.name!r}: cannot reach the upstream at {self.options.base_url}: "
            f"{type(exc).__name__}: {exc}"
        )


async def _event_data(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The ``data:`` payload of each server-sent event (the JSON names its own type, so the
    ``event:`` lines are not needed). Lines are split here rather than with the reader's
    ``readline``, which refuses lines longer than its buffer (a large tool input can be)."""
    pending = b""
    async for chunk in content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if pending.startswith(b"data:"):
        yield pending[5:].strip()
