"""A streamed chat completion on the wire: every chunk of the upstream's passes through the moment
it arrives, and what is ready together travels together: text that arrived in one read as one
chunk, the stream's last frames with the end of the body. Each spares a delta through the
pipeline, a system call, and a wake-up of the client."""

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
    fake.behaviour.chunk_delay_s = 0.05  # after the first word, each arrives on its own
    client = await gateway({"experts": {"remote": {"kind": "openai", "base_url": base_url}}})
    body = user("x", stream=True, stream_options={"include_usage": True})
    chunks = await read_chunked(client.host, client.port, body)

    frames = [events(chunk) for chunk in chunks]
    role = frames[0][0]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    words = [
        [f["choices"][0]["delta"]["content"] for f in frame if f is not role]
        for frame in frames[:-1]
    ]
    # The first word goes out with the role; each later one, sent apart, in a frame of its own.
    assert words == [["one"], [" two"], [" three"]] or words == [[], ["one"], [" two"], [" three"]]
    assert all(
        f["system_fingerprint"] == "fp_fake"
        for frame in frames[:-1]
        for f in frame
        if f is not role
    )
    last = frames[-1]
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


async def test_text_that_arrives_together_leaves_as_one_chunk(gateway, fake_upstream):
    fake, base_url = fake_upstream
    words = [f"w{n}" for n in range(200)]
    fake.behaviour.reply = " ".join(words)  # 200 chunks written back to back
    client = await gateway({"experts": {"remote": {"kind": "openai", "base_url": base_url}}})
    chunks = await read_chunked(client.host, client.port, user("x", stream=True))
    frames = [frame for chunk in chunks for frame in events(chunk) if isinstance(frame, dict)]
    texts = [f["choices"][0]["delta"].get("content") for f in frames if f["choices"]]
    assert "".join(t or "" for t in texts) == " ".join(words)
    # Fewer chunks than words: a burst went out in pieces, none of them a token alone.
    assert len(texts) < len(words) / 2, len(texts)
    assert frames[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chunks_that_carry_more_than_text_are_never_joined(gateway, fake_upstream):
    fake, base_url = fake_upstream
    fake.behaviour.reply = " ".join(f"w{n}" for n in range(50))
    client = await gateway({"experts": {"remote": {"kind": "openai", "base_url": base_url}}})
    body = user("x", stream=True, logprobs=True)
    chunks = await read_chunked(client.host, client.port, body)
    frames = [frame for chunk in chunks for frame in events(chunk) if isinstance(frame, dict)]
    carrying = [f for f in frames if f["choices"] and f["choices"][0].get("logprobs")]
    assert len(carrying) == 50  # one token's log-probabilities each, as the upstream sent them
