"""The Pollinations HTTP client: one pooled session per process, retries that honour
``Retry-After``, and a time limit on every call.

Every Pollinations expert and the task-classifier gate share one :class:`aiohttp.ClientSession`
(opened by the first ``start`` and closed by the last ``close``), so connections to the two hosts
are reused across models. Rate limits (429) and server errors (5xx) are retried with exponential
backoff, waiting what ``Retry-After`` asks when it says, but never longer than
``max_retry_wait_s``: a longer wait is the caller's decision, so it is reported as a 429.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog
from pydantic import Field

from moe_core import (
    BaseURL,
    ExpertTimeout,
    ExpertUnavailable,
    MoEError,
    Options,
    UpstreamError,
)
from moe_core.errors import upstream_detail, upstream_error

log = structlog.get_logger(__name__)

TEXT_BASE_URL = "https://text.pollinations.ai"
IMAGE_BASE_URL = "https://image.pollinations.ai"


class ConnectionOptions(Options):
    """Where Pollinations is and how to talk to it (shared by experts and the gate)."""

    text_base_url: BaseURL = Field(TEXT_BASE_URL, description="Text API root (/openai, /models)")
    image_base_url: BaseURL = Field(IMAGE_BASE_URL, description="Image API root (/prompt, /models)")
    token_env: str | None = Field(
        "POLLINATIONS_TOKEN", description="Environment variable with the API token (optional)"
    )
    referrer_env: str | None = Field(
        "POLLINATIONS_REFERRER", description="Environment variable with the referrer (optional)"
    )
    max_retries: int = Field(3, ge=0, le=10, description="Retries on 429 and 5xx")
    backoff_s: float = Field(0.5, ge=0, description="First retry wait when no Retry-After")
    max_retry_wait_s: float = Field(
        30.0, ge=0, description="Longest Retry-After honoured; longer is reported as a 429"
    )
    connect_timeout_s: float = Field(10.0, gt=0)


class _SharedSession:
    """The process's one session, counted: opened by the first user, closed by the last."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.users = 0

    def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        if self.session is not None and (self.session.closed or self.loop is not loop):
            # A session belongs to its event loop; one left from a finished loop is unusable.
            self.session, self.users = None, 0
        self.loop = loop
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                raise_for_status=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        self.users += 1

    async def release(self) -> None:
        self.users = max(0, self.users - 1)
        if self.users == 0 and self.session is not None:
            session, self.session = self.session, None
            await session.close()


SESSION = _SharedSession()


@dataclass(frozen=True)
class Reply:
    """A complete upstream answer."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class PollinationsClient:
    """Calls to both Pollinations hosts, through the process's shared session."""

    def __init__(self, options: ConnectionOptions, *, who: str) -> None:
        self.options = options
        self.who = who  # named in errors: the expert or gate making the call
        self._started = False
        self.headers: dict[str, str] = {}
        token = os.environ.get(options.token_env) if options.token_env else None
        self.referrer = os.environ.get(options.referrer_env) if options.referrer_env else None
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if self.referrer:
            self.headers["Referer"] = self.referrer

    async def start(self) -> None:
        if not self._started:
            SESSION.acquire()
            self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            await SESSION.release()

    @property
    def session(self) -> aiohttp.ClientSession:
        if not self._started or SESSION.session is None:
            raise ExpertUnavailable(f"{self.who} is not started")
        return SESSION.session

    def _params(self, params: dict[str, Any]) -> dict[str, str]:
        query = {key: _query_value(value) for key, value in params.items() if value is not None}
        if self.referrer:
            query.setdefault("referrer", self.referrer)
        return query

    # -- the calls ------------------------------------------------------------------------

    async def chat(self, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """``POST {text}/openai``: an OpenAI chat completion."""
        reply = await self.send(
            "POST", f"{self.options.text_base_url}/openai", json=body, timeout_s=timeout_s
        )
        try:
            payload = reply.json()
            payload["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError(
                f"{self.who}: Pollinations answered something that is not a chat completion: "
                f"{reply.body[:200]!r}"
            ) from None
        return payload

    async def chat_stream(
        self, body: dict[str, Any], *, timeout_s: float
    ) -> AsyncIterator[dict[str, Any]]:
        """``POST {text}/openai`` with ``stream: true``: the SSE chunks, as dicts.

        ``timeout_s`` bounds the wait for the first byte and then each silence between chunks.
        """
        url = f"{self.options.text_base_url}/openai"
        try:
            async with self._open("POST", url, json=body, timeout_s=timeout_s) as response:
                async for line in _lines(response, timeout_s):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    try:
                        chunk = orjson.loads(data)
                    except ValueError:
                        raise UpstreamError(
                            f"{self.who}: unreadable stream event {data[:200]!r}"
                        ) from None
                    if isinstance(chunk, dict) and "error" in chunk:
                        raise UpstreamError(f"{self.who}: {upstream_detail(data)}")
                    yield chunk
        except TimeoutError:
            raise self._timeout(timeout_s, "while streaming") from None
        except aiohttp.ClientError as exc:
            raise ExpertUnavailable(f"{self.who}: the stream broke: {exc}") from None

    async def image(self, prompt: str, params: dict[str, Any], *, timeout_s: float) -> Reply:
        """``GET {image}/prompt/{prompt}``: the image bytes."""
        url = f"{self.options.image_base_url}/prompt/{quote(prompt, safe='')}"
        reply = await self.send("GET", url, params=params, timeout_s=timeout_s)
        if not reply.content_type.startswith("image/"):
            raise UpstreamError(
                f"{self.who}: Pollinations answered {reply.content_type or 'no content type'} "
                f"instead of an image: {reply.body[:200]!r}"
            )
        return reply

    async def text_get(self, prompt: str, params: dict[str, Any], *, timeout_s: float) -> Reply:
        """``GET {text}/{prompt}``: plain text (or audio/mpeg for the audio model)."""
        url = f"{self.options.text_base_url}/{quote(prompt, safe='')}"
        return await self.send("GET", url, params=params, timeout_s=timeout_s)

    async def models(self, host: str, *, timeout_s: float = 15.0) -> Any:
        """``GET {host}/models`` on ``"text"`` or ``"image"``, parsed."""
        base = self.options.text_base_url if host == "text" else self.options.image_base_url
        reply = await self.send("GET", f"{base}/models", timeout_s=timeout_s)
        try:
            return reply.json()
        except ValueError:
            raise UpstreamError(f"{self.who}: {base}/models is not JSON") from None

    # -- plumbing --------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float,
    ) -> Reply:
        """One call, retried on 429/5xx and refused connections; the whole of it, retries
        included, within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._open(method, url, json=json, params=params) as response:
                    body = await response.read()
                    return Reply(response.status, response.content_type or "", body)
        except TimeoutError:
            raise self._timeout(timeout_s, "for an answer") from None
        except aiohttp.ClientError as exc:
            raise ExpertUnavailable(f"{self.who}: the connection broke: {exc}") from None

    def _open(self, method: str, url: str, **kwargs: Any) -> _Attempts:
        return _Attempts(self, method, url, **kwargs)

    def _timeout(self, timeout_s: float, what: str) -> ExpertTimeout:
        return ExpertTimeout(f"{self.who}: Pollinations gave nothing {what} within {timeout_s} s")

    def error(self, status: int, body: bytes, headers: Any) -> MoEError:
        """The gateway error for an upstream error status."""
        where = f"{self.who} (Pollinations, status {status})"
        return upstream_error(where, status, body, headers, credentials="token_env")


class _Attempts:
    """``async with``: the first response that is not a retryable failure (or the error)."""

    def __init__(
        self,
        client: PollinationsClient,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.client, self.method, self.url = client, method, url
        self.data = orjson.dumps(json) if json is not None else None
        self.params = client._params(params or {})
        self.timeout_s = timeout_s
        self.response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        client, options = self.client, self.client.options
        headers = dict(client.headers)
        if self.data is not None:
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=options.connect_timeout_s, sock_read=self.timeout_s
        )
        for attempt in range(options.max_retries + 1):
            last = attempt == options.max_retries
            try:
                response = await client.session.request(
                    self.method,
                    self.url,
                    data=self.data,
                    params=self.params,
                    headers=headers,
                    timeout=timeout,
                )
            except aiohttp.ClientConnectionError as exc:
                if last or isinstance(exc, aiohttp.ServerTimeoutError):
                    raise
                await asyncio.sleep(options.backoff_s * 2**attempt)
                continue
            if response.status < 400:
                self.response = response
                return response
            body = await response.read()
            response.release()
            error = client.error(response.status, body, response.headers)
            if last or not (response.status == 429 or response.status >= 500):
                raise error
            wait = _retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = options.backoff_s * 2**attempt
            elif wait > options.max_retry_wait_s:
                error.message += (
                    f" (asked to wait {wait:.0f} s, more than max_retry_wait_s "
                    f"{options.max_retry_wait_s:.0f} s)"
                )
                raise error
            log.info(
                "pollinations.retry",
                who=client.who,
                status=response.status,
                wait_s=round(wait, 3),
                attempt=attempt + 1,
            )
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def __aexit__(self, *exc_info: object) -> None:
        if self.response is not None:
            self.response.release()


async def _lines(response: aiohttp.ClientResponse, timeout_s: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(timeout_s):
            line = await response.content.readline()
        if not line:
            return
        yield line


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import datetime

        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
