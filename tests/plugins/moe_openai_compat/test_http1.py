"""The ``openai`` expert's HTTP/1.1 client, against raw servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from moe_openai_compat.http1 import (
    ConnectError,
    Disconnected,
    HTTPPool,
    PoolTimeout,
    ReadTimeout,
)
from tests.conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), headers, body)


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A server counting its connections; returns it, its base URL and the counter."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1", connections


async def test_keeps_connections_alive_and_sends_a_well_formed_post():
    seen: list[tuple[bytes, bytes]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            seen.append((head, body))
            writer.write(ok(body.upper(), b"Retry-After: 3"))
            await writer.drain()

    server, url, connections = await serve(echo)
    pool = HTTPPool(url, headers={"Content-Type": "application/json", "Authorization": "Bearer k"})
    try:
        for word in (b"one", b"two", b"three"):
            answer, body = await pool.post("/chat/completions", word)
            assert (answer.status, body, answer.headers["retry-after"]) == (200, word.upper(), "3")
    finally:
        await pool.close()
        server.close()
    assert len(connections) == 1, "three sequential calls should share one connection"
    head = seen[0][0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert "Host: 127.0.0.1:" in head and "Authorization: Bearer k" in head
    assert "Accept-Encoding: identity" in head


async def test_a_body_larger_than_the_stream_buffer_is_read_whole():
    big = b"x" * (3 * 1024 * 1024)

    async def large(reader, writer) -> None:
        await read_request(reader)
        writer.write(ok(big))
        await writer.drain()

    server, url, _ = await serve(large)
    pool = HTTPPool(url, headers={}, read_timeout=5)
    try:
        assert (await pool.post("/x", b"{}"))[1] == big
    finally:
        await pool.close()
        server.close()


async def test_a_pooled_connection_the_upstream_closed_is_retried_on_a_fresh_one():
    async def one_answer_per_connection(reader, writer) -> None:
        _, body = await read_request(reader)
        writer.write(ok(body))  # keep-alive answer, then the server drops the connection
        await writer.drain()

    server, url, connections = await serve(one_answer_per_connection)
    pool = HTTPPool(url, headers={})
    try:
        assert (await pool.post("/x", b"a"))[1] == b"a"
        await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
        assert (await pool.post("/x", b"b"))[1] == b"b"
    finally:
        await pool.close()
        server.close()
    assert len(connections) == 2


async def test_chunked_answers_stream_as_they_arrive_and_split_into_lines():
    release = asyncio.Event()

    async def chunked(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"8\r\ndata: a\n\r\n")
        await writer.drain()
        await release.wait()  # the second event only after the client has seen the first
        writer.write(b"6\r\n\ndata:\r\n4\r\n b\n\n\r\n0\r\n\r\n")
        await writer.drain()

    server, url, _ = await serve(chunked)
    pool = HTTPPool(url, headers={})
    lines = []
    try:
        async with pool.stream("/x", b"{}") as answer:
            assert answer.status == 200
            async for batch in answer.lines():
                lines.append(batch)
                release.set()
    finally:
        await pool.close()
        server.close()
    # The first arrival's lines before the rest was sent; a line split across chunks whole.
    assert lines[0] == [b"data: a"]
    assert [line for batch in lines for line in batch] == [b"data: a", b"", b"data: b", b""]


async def test_silence_before_the_answer_starts_is_the_first_byte_timeout():
    async def silent(reader, writer) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server, url, _ = await serve(silent)
    pool = HTTPPool(url, headers={}, first_byte_timeout=0.2, read_timeout=5)
    try:
        with pytest.raises(ReadTimeout, match="did not start answering within 0.2 s") as error:
            await pool.post("/x", b"{}")
        assert not error.value.started
    finally:
        await pool.close()
        server.close()


async def test_silence_in_the_middle_of_an_answer_is_the_read_timeout():
    async def stalls(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    server, url, _ = await serve(stalls)
    # A first-byte limit far longer than the read limit: once bytes flow, the read limit rules.
    pool = HTTPPool(url, headers={}, first_byte_timeout=30, read_timeout=0.2)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ReadTimeout, match="went silent for 0.2 s in the middle") as error:
            async with pool.stream("/x", b"{}") as answer:
                async for _ in answer.chunks():
                    pass
        assert error.value.started
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        await pool.close()
        server.close()


async def test_an_upstream_dying_mid_answer_is_an_error_not_a_short_body():
    async def dies(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    server, url, _ = await serve(dies)
    pool = HTTPPool(url, headers={})
    try:
        with pytest.raises(Disconnected, match="midway through its answer") as error:
            await pool.post("/x", b"{}")
        assert error.value.midway
    finally:
        await pool.close()
        server.close()


async def test_nothing_listening_is_a_connect_error_that_names_no_address():
    pool = HTTPPool(f"http://127.0.0.1:{free_port()}", headers={}, connect_timeout=2)
    with pytest.raises(ConnectError) as error:
        await pool.post("/x", b"{}")
    assert str(error.value) == "cannot connect to the upstream: Connection refused"
    await pool.close()


async def test_a_wait_for_a_free_connection_is_bounded_by_the_pool_timeout():
    async def slow(reader, writer) -> None:
        await read_request(reader)
        await asyncio.sleep(0.5)
        writer.write(ok(b"done"))
        await writer.drain()

    server, url, connections = await serve(slow)
    pool = HTTPPool(url, headers={}, limit=1, pool_timeout=0.1)
    try:
        results = await asyncio.gather(
            pool.post("/x", b"{}"), pool.post("/x", b"{}"), return_exceptions=True
        )
        assert results[0][1] == b"done"
        assert isinstance(results[1], PoolTimeout)
        assert str(results[1]) == "all 1 connections to the upstream stayed busy for 0.1 s"
        assert len(connections) == 1
        assert (await pool.post("/x", b"{}"))[1] == b"done", "the slot was given back"
    finally:
        await pool.close()
        server.close()


async def test_leaving_a_stream_early_closes_its_connection_instead_of_pooling_it():
    closed = asyncio.Event()

    async def endless(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"5\r\nhello\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()

    server, url, _ = await serve(endless)
    pool = HTTPPool(url, headers={})
    try:
        async with pool.stream("/x", b"{}") as answer:
            async for _ in answer.chunks():
                break
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        await pool.close()
        server.close()


async def test_calls_beyond_the_connection_limit_wait_for_a_free_connection():
    active = 0
    most = 0

    async def slow(reader, writer) -> None:
        nonlocal active, most
        while True:
            _, body = await read_request(reader)
            active += 1
            most = max(most, active)
            await asyncio.sleep(0.02)
            active -= 1
            writer.write(ok(body))
            await writer.drain()

    server, url, connections = await serve(slow)
    pool = HTTPPool(url, headers={}, limit=2)
    try:
        bodies = await asyncio.gather(*(pool.post("/x", b"%d" % i) for i in range(6)))
    finally:
        await pool.close()
        server.close()
    assert [b for _, b in bodies] == [b"%d" % i for i in range(6)]
    assert most == 2 and len(connections) == 2


async def test_a_call_cancelled_while_waiting_for_a_connection_gives_up_no_slot():
    release = asyncio.Event()

    async def held(reader, writer) -> None:
        while True:
            _, body = await read_request(reader)
            if body == b"hold":
                await release.wait()
            writer.write(ok(body, b"X-Answer: yes"))
            await writer.drain()

    server, url, connections = await serve(held)
    pool = HTTPPool(url, headers={}, limit=1)
    try:
        holder = asyncio.create_task(pool.post("/x", b"hold"))
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(pool.post("/x", b"w%d" % i)) for i in range(3)]
        await asyncio.sleep(0.05)
        waiting[0].cancel()  # gave up in the queue
        release.set()
        answer, body = await asyncio.wait_for(holder, 5)
        answers = await asyncio.wait_for(asyncio.gather(*waiting[1:]), 5)
        # The limit still holds one call at a time, and no slot was lost to the cancelled one.
        again = await asyncio.wait_for(pool.post("/x", b"after"), 5)
    finally:
        await pool.close()
        server.close()
    assert (answer.status, body, answer.headers["x-answer"]) == (200, b"hold", "yes")
    assert [b for _, b in answers] == [b"w1", b"w2"] and again[1] == b"after"
    assert waiting[0].cancelled() and len(connections) == 1
