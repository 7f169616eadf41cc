"""One keep-alive HTTP/1.1 connection of ``http1.HTTPPool`` and the answer it carries.

The connection is an ``asyncio.Protocol`` that feeds bytes to ``httptools`` (the llhttp C
parser) and hands status, headers and body to an :class:`Answer`, which is read whole or
chunk by chunk with back-pressure. One timer per connection watches for silence: before the
answer starts (the first-byte timeout) and in the middle of it (the read timeout).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator

import httptools

_HIGH_WATER = 256 * 1024  # buffered answer bytes at which reading from the socket pauses
_LOW_WATER = 64 * 1024


class HTTPClientError(Exception):
    """The upstream could not be reached or did not answer properly."""


class ConnectError(HTTPClientError):
    """No connection could be opened (or no tunnel through the proxy)."""


class PoolTimeout(HTTPClientError):
    """Every pooled connection stayed busy for longer than the pool timeout."""


class ReadTimeout(HTTPClientError):
    """The upstream stayed silent too long: before its answer started (``started`` false: the
    first-byte timeout) or in the middle of it (the read timeout)."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


class Disconnected(HTTPClientError):
    """The upstream closed the connection before the answer was complete; ``midway`` when
    part of the answer had arrived."""

    def __init__(self, message: str, *, midway: bool) -> None:
        super().__init__(message)
        self.midway = midway


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

    def __init__(self, connection: Connection) -> None:
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

    async def lines(self) -> AsyncIterator[list[bytes]]:
        """The body split into lines (for server-sent events), line ends stripped: each time
        some arrived, every complete line received so far, together. What arrived together
        can then be handled together (see ``reading.coalesced``)."""
        pending = b""
        while True:
            done = self._done  # read first: whatever came before the end is queued by now
            while self._chunks:
                pending += self._chunks.popleft()
            self._size = 0
            self._connection.resume()
            *complete, pending = pending.split(b"\n")
            if complete:
                yield [line.rstrip(b"\r") for line in complete]
            if done:
                if self._error is not None:
                    raise self._error
                if pending:
                    yield [pending]
                return
            if not self._chunks and not self._done:
                await self._wait()


class Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, first_byte_timeout: float, read_timeout: float
    ) -> None:
        self.loop = loop
        self.first_byte_timeout = first_byte_timeout
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
        why = f" ({reason(exc)})" if exc else ""
        midway = self.answer is not None and self.answer.received
        if midway:
            message = f"the upstream closed the connection midway through its answer{why}"
        else:
            message = f"the upstream closed the connection before answering{why}"
        self._fail(Disconnected(message, midway=midway))

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
            # The answer started: from now on silence is measured by the read timeout, which
            # may be due before the first-byte deadline the timer was set for.
            due = self._last_data + self.read_timeout
            if self._timer is not None and self._timer.when() > due:
                self._timer.cancel()
                self._timer = self.loop.call_at(due, self._check_silence)

    # used by the pool and the answer
    def send(self, payload: bytes) -> Answer:
        assert self.transport is not None
        self.answer = Answer(self)
        self.headers_ready = self.loop.create_future()
        self.reusable = False
        self._last_data = self.loop.time()
        due = self._last_data + self.first_byte_timeout
        if self._timer is None or self._timer.when() > due:
            # Left armed between answers (it re-arms itself while one is awaited, and lapses on
            # an idle connection): one timer per connection, not one per request.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(due, self._check_silence)
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
        started = self.answer.received
        limit = self.read_timeout if started else self.first_byte_timeout
        deadline = self._last_data + limit
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._check_silence)
            return
        if started:
            message = f"the upstream went silent for {limit:g} s in the middle of its answer"
        else:
            message = f"the upstream did not start answering within {limit:g} s"
        self._abort(ReadTimeout(message, started=started))

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


def reason(exc: BaseException) -> str:
    """Why a connection failed, in words that name no address (an ``OSError``'s own text
    usually quotes the address it could not reach)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc.__class__.__name__}"
    if isinstance(exc, OSError) and exc.errno:
        if isinstance(exc, socket.gaierror):
            return f"the host name did not resolve ({exc.strerror})"
        return os.strerror(exc.errno)
    return type(exc).__name__
