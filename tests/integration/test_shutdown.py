"""A stream still running when the server's grace period ends gets an `error` event before the
connection closes, so clients see a clear failure instead of a truncated answer."""

from __future__ import annotations

import signal

import aiohttp
from aiohttp.test_utils import TestServer

from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import free_port, serving, user, wait_healthy


async def test_a_stream_cut_at_shutdown_ends_with_an_error_event(tmp_path):
    fake = FakeOpenAI()
    fake.behaviour.reply = " ".join(["word"] * 200)
    fake.behaviour.chunk_delay_s = 0.05  # ten seconds of answer
    upstream = TestServer(fake.app(), host="127.0.0.1")
    await upstream.start_server()
    port = free_port()
    config = {
        "server": {"port": port, "shutdown_timeout_s": 1},
        "experts": {"slow": {"kind": "openai", "base_url": str(upstream.make_url("/v1"))}},
    }
    url = f"http://127.0.0.1:{port}"
    try:
        with serving(config, tmp_path) as server:
            async with aiohttp.ClientSession() as session:
                await wait_healthy(url)
                body = user("go", stream=True)
                async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                    await response.content.readline()  # the stream has started
                    server.send_signal(signal.SIGTERM)
                    rest = ""
                    try:  # the connection is closed right after the last event: read up to it
                        async for line in response.content:
                            rest += line.decode()
                    except aiohttp.ClientPayloadError:
                        pass
            assert "server_shutting_down" in rest
            assert "[DONE]" not in rest
            assert server.wait(timeout=15) == 0
    finally:
        await upstream.close()
