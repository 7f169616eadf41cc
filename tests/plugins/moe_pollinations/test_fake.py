"""The fake speaks Pollinations' wire format: the tests of everything else rely on it."""

from __future__ import annotations

import base64

import aiohttp

from moe_pollinations.media import jpeg, jpeg_comment, jpeg_size, mp3, mp3_frames
from moe_pollinations.testing import FakePollinations, ModelBehaviour


def test_media_bytes_are_real_files():
    image = jpeg(640, 480, "hello")
    assert jpeg_size(image) == (640, 480)
    assert jpeg_comment(image) == "hello"
    assert image[:3] == b"\xff\xd8\xff" and image.endswith(b"\xff\xd9")
    sound = mp3(2.0)
    assert mp3_frames(sound) == 77  # 2 s at 44.1 kHz, 1152 samples a frame
    try:
        mp3_frames(sound[:-10])
    except ValueError as exc:
        assert "truncated" in str(exc)
    else:
        raise AssertionError("a truncated MP3 must be refused")


async def test_listings_on_both_hosts(fake: FakePollinations):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.text_url}/models") as response:
            text = await response.json()
        async with session.get(f"{fake.image_url}/models") as response:
            image = await response.json()
    assert len(text) == 26 and {"name", "tier", "input_modalities"} <= set(text[0])
    audio = next(model for model in text if model["name"] == "openai-audio")
    assert "nova" in audio["voices"] and "audio" in audio["output_modalities"]
    assert image == ["flux", "kontext", "turbo", "gptimage"]


async def test_image_endpoint_answers_a_jpeg_of_the_asked_size(fake: FakePollinations):
    url = f"{fake.image_url}/prompt/a%20red%20fox"
    params = {"model": "turbo", "width": "320", "height": "200", "seed": "7", "nologo": "true"}
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        body = await response.read()
    assert jpeg_size(body) == (320, 200)
    assert '"prompt": "a red fox"' in jpeg_comment(body)
    assert '"seed": "7"' in jpeg_comment(body)


async def test_chat_audio_and_sse_shapes(fake: FakePollinations):
    body = {
        "model": "openai-audio",
        "messages": [{"role": "user", "content": "hello"}],
        "modalities": ["text", "audio"],
        "audio": {"voice": "nova", "format": "mp3"},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.text_url}/openai", json=body) as response:
            payload = await response.json()
        message = payload["choices"][0]["message"]
        assert message["content"] is None
        assert mp3_frames(base64.b64decode(message["audio"]["data"])) > 0
        assert message["audio"]["transcript"] == "openai-audio says: hello"
        stream = {
            "model": "openai",
            "messages": [{"role": "user", "content": "a b"}],
            "stream": True,
        }
        async with session.post(f"{fake.text_url}/openai", json=stream) as response:
            assert response.content_type == "text/event-stream"
            raw = (await response.read()).decode()
    frames = [line for line in raw.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    assert '"object": "chat.completion.chunk"' in frames[0]


async def test_rate_limit_with_retry_after_then_recovery(fake: FakePollinations):
    fake.behaviour["flux"] = ModelBehaviour(status=429, fail_times=1, retry_after="3")
    url = f"{fake.image_url}/prompt/cat"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params={"model": "flux"}) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "3"
            assert (await response.json())["error"] == "Too Many Requests"
        async with session.get(url, params={"model": "flux"}) as response:
            assert response.status == 200
