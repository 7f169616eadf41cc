"""A small HTTP proxy on loopback, speaking what real forward proxies speak: ``CONNECT
host:port`` opens a tunnel (answered ``200 Connection established``), any other request comes in
absolute form (``POST http://host:port/path HTTP/1.1``) and is forwarded to that host. Host names
are resolved through ``hosts`` first, so a test can name an upstream that only the proxy can
reach. It keeps every request line and ``Proxy-Authorization`` it saw, and can require one.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class FakeProxy:
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address, as /etc/hosts
    authorization: str | None = None  # required Proxy-Authorization value, if any
    lines: list[str] = field(default_factory=list)  # request lines seen, in order
    credentials: list[str | None] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(h.split(": ", 1) for h in header_lines if ": " in h)
        self.lines.append(line)
        self.credentials.append(headers.get("Proxy-Authorization"))
        if self.authorization and headers.get("Proxy-Authorization") != self.authorization:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        method, target, _ = line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await self._open(host, int(port))
            if upstream is None:
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                writer.close()
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            first = b""
        else:
            parts = urlsplit(target)
            upstream = await self._open(parts.hostname or "", parts.port or 80)
            if upstream is None:
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                writer.close()
                return
            first = head  # forwarded as it came: HTTP/1.1 servers take absolute-form targets
        up_reader, up_writer = upstream
        up_writer.write(first)
        await asyncio.gather(
            self._pipe(reader, up_writer, watch=True), self._pipe(up_reader, writer)
        )

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(self.hosts.get(host, host), port)
        except OSError:
            return None

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, watch: bool = False
    ) -> None:
        """Copy bytes one way; a keep-alive connection's later absolute-form request lines are
        recorded too (``watch``), as a proxy logs every request it forwards."""
        try:
            while data := await source.read(65536):
                if watch and data.startswith(b"POST http"):
                    self.lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()
