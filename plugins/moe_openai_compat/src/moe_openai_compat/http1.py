"""A lean pooled HTTP/1.1 client for one upstream: what the ``openai`` expert needs and no more.

Why not aiohttp's client: in front of a fast upstream the gateway's own CPU time per request
decides its throughput, and aiohttp's general-purpose client (cookie jars, redirects, proxies,
tracing, multidicts, URL objects) spends more per call than the rest of the pipeline together
(``make bench-overhead`` measures it). This client sends one POST per call on a pooled keep-alive
connection and parses the answer with ``httptools`` (the llhttp C parser that uvicorn uses).

What it does: keep-alive pooling with a connection limit (and a bounded wait for a free
connection, which does not count towards the caller's ``timeout_s``: see ``moe_core.pool.queued``),
TLS for https, an HTTP proxy (``CONNECT`` tunnels for https, absolute-form requests for http),
Content-Length and chunked answers, answers read whole or streamed chunk by chunk with
back-pressure, three timeouts (connect; first byte, the wait for the answer to start; read, the
longest silence once it has), one retry on a fresh connection when a pooled one turns out to have
been closed by the upstream before it answered anything. What it does not: redirects, cookies,
compressed answers (it asks for ``identity``), HTTP/2.

Its error messages name no host or address: they reach the gateway's callers, who need not
know where its upstreams live (the expert logs that for operators).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit

import httptools

from moe_core.pool import queued
from moe_openai_compat.connection import (
    Answer,
    ConnectError,
    Connection,
    Disconnected,
    HTTPClientError,
    PoolTimeout,
    ReadTimeout,
    reason,
)
from moe_openai_compat.proxy import Proxy

__all__ = [
    "Answer",
    "ConnectError",
    "Disconnected",
    "HTTPClientError",
    "HTTPPool",
    "PoolTimeout",
    "ReadTimeout",
]


class _Slots:
    """The pool's connection limit. Taking a free slot is a counter decrement, where asyncio's
    Semaphore builds three coroutines per use: on a gateway's hot path that shows."""

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with queued(), asyncio.timeout(self.timeout):
                await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as the caller gave up: pass it on
            raise
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self.give()
            raise PoolTimeout(
                f"all {self.limit} connections to the upstream stayed busy for {self.timeout:g} s"
            ) from None

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1


class HTTPPool:
    """Pooled keep-alive connections to one ``http(s)://host:port`` (directly or through an HTTP
    proxy); POSTs JSON bodies."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        query: Mapping[str, str] | None = None,
        limit: int = 100,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 60.0,
        read_timeout: float = 30.0,
        pool_timeout: float = 10.0,
        proxy: Proxy | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        default_port = self.port == (443 if self.ssl else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if default_port else f"{host}:{self.port}"
        # Query parameters of the base URL and the expert's own, on every call.
        pairs = urlencode([*parse_qsl(parts.query), *(query or {}).items()])
        self._query = f"?{pairs}" if pairs else ""
        self.prefix = parts.path.rstrip("/")
        fixed = {"Host": authority, "Accept-Encoding": "identity", **headers}
        self.proxy = proxy
        self._tunnel: bytes | None = None  # the CONNECT request, for https through a proxy
        if proxy is not None:
            proxy_headers = f"Host: {authority}\r\n"
            if proxy.authorization:
                proxy_headers += f"Proxy-Authorization: {proxy.authorization}\r\n"
            if self.ssl is not None:
                head = f"CONNECT {authority} HTTP/1.1\r\n{proxy_headers}\r\n"
                self._tunnel = head.encode("latin-1")
            else:
                # Plain http: the proxy reads the whole URL from the request line.
                self.prefix = f"http://{authority}{self.prefix}"
                if proxy.authorization:
                    fixed["Proxy-Authorization"] = proxy.authorization
        self._head_tail = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.read_timeout = read_timeout
        self._idle: deque[Connection] = deque()
        self._slots = _Slots(limit, pool_timeout)
        self._open: set[Connection] = set()

    def _payload(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> bytes:
        target = f"{self.prefix}{path}{self._query}"
        head = f"POST {target} HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
        if headers:  # this request's own (a W3C traceparent), beside the expert's fixed ones
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return b"".join((head.encode("latin-1"), self._head_tail, b"\r\n", body))

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        host, port = (self.host, self.port) if proxy is None else (proxy.host, proxy.port)
        direct_tls = self.ssl if proxy is None else None
        what = "the upstream" if proxy is None else "the proxy"
        connection: Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(loop, self.first_byte_timeout, self.read_timeout),
                    host,
                    port,
                    ssl=direct_tls,
                    server_hostname=self.host if direct_tls else None,
                )
                if self._tunnel is not None:
                    await self._open_tunnel(connection)
        except TimeoutError:
            if connection is not None:
                connection.close()
            raise ConnectError(f"no connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            if connection is not None:
                connection.close()
            raise ConnectError(f"cannot connect to {what}: {reason(exc)}") from None
        self._open.add(connection)
        return connection

    async def _open_tunnel(self, connection: Connection) -> None:
        """Ask the proxy for a tunnel to the upstream, then speak TLS to the upstream in it."""
        assert self._tunnel is not None and self.ssl is not None
        answer = connection.send(self._tunnel)
        try:
            await connection.headers_ready  # type: ignore[misc]
        except HTTPClientError as exc:
            connection.close()
            raise ConnectError(f"the proxy gave no tunnel: {exc}") from None
        if not 200 <= answer.status < 300:
            connection.close()
            raise ConnectError(f"the proxy refused the tunnel with status {answer.status}")
        # The tunnel carries TLS from here on, and then answers of its own to parse afresh.
        connection.answer = connection.headers_ready = None
        connection.parser = httptools.HttpResponseParser(connection)
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            connection.transport,  # type: ignore[arg-type]
            connection,
            self.ssl,
            server_hostname=self.host,
        )
        if transport is None:
            raise ConnectError("the tunnel closed during the TLS handshake")
        connection.transport = transport  # type: ignore[assignment]

    def _idle_connection(self) -> Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open.discard(connection)
        return None

    async def _exchange(self, payload: bytes) -> tuple[Connection, Answer]:
        """Send on a pooled connection (retrying once on a fresh one if the pooled one was
        dead before answering), and wait for the answer's status and headers."""
        connection = self._idle_connection()
        if connection is not None:
            answer = connection.send(payload)
            try:
                await connection.headers_ready  # type: ignore[misc]
                return connection, answer
            except Disconnected:
                self._discard(connection)
                if answer.received:
                    raise
            except BaseException:
                self._discard(connection)
                raise
        connection = await self._connect()
        answer = connection.send(payload)
        try:
            await connection.headers_ready  # type: ignore[misc]
        except BaseException:
            self._discard(connection)
            raise
        return connection, answer

    def _release(self, connection: Connection, answer: Answer) -> None:
        connection.answer = None
        connection.headers_ready = None
        if answer.complete and connection.reusable and not connection.closed:
            connection.resume()
            self._idle.append(connection)
        else:
            self._discard(connection)

    def _discard(self, connection: Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[Answer, bytes]:
        """POST ``body`` to ``path`` (under the base URL's path): the answer (its status, and its
        headers, decoded only if read) and its whole body."""
        await self._slots.take()
        try:
            connection, answer = await self._exchange(self._payload(path, body, headers))
            try:
                data = await answer.read()
            finally:
                self._release(connection, answer)
            return answer, data
        finally:
            self._slots.give()

    @asynccontextmanager
    async def stream(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[Answer]:
        """POST and hand back the answer to read as it arrives. Leaving early (a client that
        went away, a cancelled loser of a race) closes the connection, which stops the
        upstream's work instead of leaving it to stream into a pooled socket."""
        await self._slots.take()
        try:
            connection, answer = await self._exchange(self._payload(path, body, headers))
            try:
                yield answer
            finally:
                self._release(connection, answer)
        finally:
            self._slots.give()

    async def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
