"""A lean pooled HTTP/1.1 client for one upstream: what the ``openai`` expert needs and no more.

Why not aiohttp's client: in front of a fast upstream the gateway's own CPU time per request
decides its throughput, and aiohttp's general-purpose client (cookie jars, redirects, proxies,
tracing, multidicts, URL objects) spends more per call than the rest of the pipeline together
(``make bench-overhead`` measures it). This client sends one POST per call on a pooled keep-alive
connection and parses the answer with ``httptools`` (the llhttp C parser that uvicorn uses).

What it does: keep-alive pooling with a connection limit, TLS for https, Content-Length and
chunked answers, answers read whole or streamed chunk by chunk with back-pressure, a connect
timeout and a read timeout (the longest silence while waiting for bytes), one retry on a fresh
connection when a pooled one turns out to have been closed by the upstream before it answered
anything. What it does not: redirects, proxies, cookies, compressed answers (it asks for
``identity``), HTTP/2.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 256 * 1024  # buffered answer bytes at which reading from the socket pauses
_LOW_WATER = 64 * 1024


class HTTPClientError(Exception):
    """The upstream could not be reached or did not answer properly."""


class ConnectError(HTTPClientError):
    """No connection could be opened."""


class ReadTimeout(HTTPClientError):
    """The upstream stayed silent longer than the read timeout."""


class Disconnected(HTTPClientError):
    """The upstream closed the connection before the answer was complete."""


class Answer:
    """One HTTP answer: status and headers at once, the body read whole or streamed."""

    __slots__ = (
        "_buffer_all",
        "_chunks",
        "_connection",
        "_done",
        "_error",
        "_headers",
        "_raw_headers",
        "_size",
        "_waiter",
        "received",
        "status",
    )

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: dict[str, str] | None = None
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._buffer_all = False  # read() wants the whole body: no back-pressure
        self.received = False  # any byte of the answer arrived

    @property
    def headers(self) -> dict[str, str]:
        """The answer's headers, names in lower case. Decoded on first use: a successful answer
        is usually read without anyone looking at them."""
        if self._headers is None:
            self._headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in self._raw_headers
            }
        return self._headers

    # Called by the connection, in the event loop.
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and not self._buffer_all:
            self._connection.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._done = True
        self._wake()

    @property
    def complete(self) -> bool:
        return self._done and self._error is None

    async def _wait(self) -> None:
        self._waiter = self._connection.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read(self) -> bytes:
        """The whole body."""
        self._buffer_all = True
        self._connection.resume()
        while not self._done:
            await self._wait()
        if self._error is not None:
            raise self._error
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        while True:
            while self._chunks:
                data = self._chunks.popleft()
                self._size -= len(data)
                if self._size < _LOW_WATER:
                    self._connection.resume()
                yield data
            if self._done:
                if self._error is not None:
                    raise self._error
                return
            await self._wait()

    async def lines(self) -> AsyncIterator[bytes]:
        """The body split into lines (for server-sent events), line ends stripped."""
        pending = b""
        async for data in self.chunks():
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r")
        if pending:
            yield pending


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: Answer | None = None
        self.headers_ready: asyncio.Future[None] | None = None
        self.reusable = False
        self.closed = False
        self._paused = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._abort(HTTPClientError(f"the upstream sent a malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        reason = f": {exc}" if exc else ""
        self._fail(Disconnected(f"the upstream closed the connection before answering{reason}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.answer is not None:
            self.answer._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.answer is not None:
            self.answer.status = self.parser.get_status_code()
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.answer is not None:
            self.answer.received = True
            self.answer._feed(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.answer is not None:
            self.answer.received = True
            self.answer._finish()

    def on_message_begin(self) -> None:
        if self.answer is not None:
            self.answer.received = True

    # used by the pool and the answer
    def send(self, payload: bytes) -> Answer:
        assert self.transport is not None
        self.answer = Answer(self)
        self.headers_ready = self.loop.create_future()
        self.reusable = False
        self._last_data = self.loop.time()
        if self._timer is None:
            # Left armed between answers (it re-arms itself while one is awaited, and lapses on
            # an idle connection): one timer per connection, not one per request.
            self._timer = self.loop.call_at(
                self._last_data + self.read_timeout, self._check_silence
            )
        self.transport.write(payload)
        return self.answer

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _check_silence(self) -> None:
        self._timer = None
        if self.answer is None or self.answer._done:
            return
        if self._paused:  # the reader is behind, not the upstream: wait for it
            self._timer = self.loop.call_later(self.read_timeout, self._check_silence)
            return
        deadline = self._last_data + self.read_timeout
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._check_silence)
            return
        self._abort(ReadTimeout(f"the upstream sent nothing for {self.read_timeout:g} s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, error: HTTPClientError) -> None:
        self._cancel_timer()
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_exception(error)
            self.headers_ready.exception()  # retrieved here: the answer reports it
        if self.answer is not None:
            self.answer._fail(error)

    def _abort(self, error: HTTPClientError) -> None:
        self._fail(error)
        self.close()


class _Slots:
    """The pool's connection limit. Taking a free slot is a counter decrement, where asyncio's
    Semaphore builds three coroutines per use: on a gateway's hot path that shows."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as the caller gave up: pass it on
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1


class HTTPPool:
    """Pooled keep-alive connections to one ``http(s)://host:port``; POSTs JSON bodies."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        limit: int = 100,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        default_port = self.port == (443 if self.ssl else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if default_port else f"{host}:{self.port}"
        fixed = {"Host": authority, "Accept-Encoding": "identity", **headers}
        self._head_tail = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: deque[_Connection] = deque()
        self._slots = _Slots(limit)
        self._open: set[_Connection] = set()

    def _payload(self, path: str, body: bytes) -> bytes:
        head = f"POST {self.prefix}{path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
        return b"".join((head.encode("latin-1"), self._head_tail, b"\r\n", body))

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, self.read_timeout),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            raise ConnectError(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self._open.add(connection)
        return connection

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open.discard(connection)
        return None

    async def _exchange(self, payload: bytes) -> tuple[_Connection, Answer]:
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

    def _release(self, connection: _Connection, answer: Answer) -> None:
        connection.answer = None
        connection.headers_ready = None
        if answer.complete and connection.reusable and not connection.closed:
            connection.resume()
            self._idle.append(connection)
        else:
            self._discard(connection)

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def post(self, path: str, body: bytes) -> tuple[Answer, bytes]:
        """POST ``body`` to ``path`` (under the base URL's path): the answer (its status, and its
        headers, decoded only if read) and its whole body."""
        await self._slots.take()
        try:
            connection, answer = await self._exchange(self._payload(path, body))
            try:
                data = await answer.read()
            finally:
                self._release(connection, answer)
            return answer, data
        finally:
            self._slots.give()

    @asynccontextmanager
    async def stream(self, path: str, body: bytes) -> AsyncIterator[Answer]:
        """POST and hand back the answer to read as it arrives. Leaving early (a client that
        went away, a cancelled loser of a race) closes the connection, which stops the
        upstream's work instead of leaving it to stream into a pooled socket."""
        await self._slots.take()
        try:
            connection, answer = await self._exchange(self._payload(path, body))
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
