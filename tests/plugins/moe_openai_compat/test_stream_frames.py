"""A streamed chat completion on the wire: every chunk of the upstream's passes through as its own
frame the moment it arrives, and what is ready together travels together (the stream's last
frames with the end of the body), which spares a packet and a wake-up of the client per stream."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import user


async def read_chunked(host: str, port: int, body: dict) -> list[bytes]:
    """POST ``body`` over a raw connection; the answer's HTTP chunks, one per write the server
    made, as its Transfer-Encoding frames them."""
    reader, writer = await asyncio.open_connection(host, port)
    payload = json.dumps(body).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        chunks.append(await reader.readexactly(size))
        assert await reader.readexactly(2) == b"\r\n"
    writer.close()
    return chunks


def events(chunk: bytes) -> list[object]:
    """The SSE events in one HTTP chunk: JSON objects, or the string ``[DONE]``."""
    found = []
    for event in chunk.split(b"\n\n"):
        if event:
            data = event.removeprefix(b"data: ")
            found.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return found


async def test_each_upstream_chunk_is_a_frame_and_the_last_frames_end_the_body(
    gateway, fake_upstream
):
    fake, base_url = fake_upstream
    fake.behaviour.reply = "one two three"
    client = await gateway({"experts": {"remote": {"kind": "openai", "base_url": base_url}}})
    body = user("x", stream=True, stream_options={"include_usage": True})
    chunks = await read_chunked(client.host, client.port, body)

    frames = [events(chunk) for chunk in chunks]
    [[role], *words, last] = frames
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [[f["choices"][0]["delta"]["content"] for f in chunk] for chunk in words] == [
        ["one"],
        [" two"],
        [" three"],
    ]
    assert all(frame["system_fingerprint"] == "fp_fake" for [frame] in words)
    finish, usage, done = last
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert finish["moe_metadata"]["experts_used"] == ["remote"]
    assert finish["moe_metadata"]["modalities"] == {"text": True, "images": 0, "audio": 0}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    assert done == "[DONE]"
    ids = {frame["id"] for chunk in frames for frame in chunk if isinstance(frame, dict)}
    assert len(ids) == 1


async def test_without_include_usage_the_last_piece_is_the_finish_and_done(gateway):
    client = await gateway({"experts": {"echo": {"kind": "echo"}}})
    chunks = await read_chunked(client.host, client.port, user("a b", stream=True))
    finish, done = events(chunks[-1])
    assert finish["choices"][0]["finish_reason"] == "stop" and "usage" not in finish
    assert done == "[DONE]"
    # The echo expert's first delta has words: they go out with the role, in one piece.
    role, first = events(chunks[0])
    assert role["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["delta"] == {"content": "a"}
