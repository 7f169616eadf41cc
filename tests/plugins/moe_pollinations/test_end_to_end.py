"""Text, streaming, vision, image, image edit, speech and the combined answer, over HTTP against
the fake Pollinations API, with raw HTTP and with the official ``openai`` SDK."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from moe_pollinations.media import jpeg, jpeg_comment, jpeg_size, mp3_frames
from tests.conftest import user
from tests.plugins.moe_pollinations.conftest import full_config

PIXEL = "data:image/jpeg;base64," + base64.b64encode(jpeg(8, 8)).decode()


@pytest.fixture
async def client(gateway, expert_options, connection):
    return await gateway(full_config(expert_options, connection))


async def post(client, body):
    response = await client.post("/v1/chat/completions", json=body)
    payload = await response.json()
    assert response.status == 200, payload
    return payload


async def test_text_answer_with_tuned_parameters(client, fake):
    body = await post(client, user("Write a python function that reverses a linked list"))
    assert body["object"] == "chat.completion"
    assert body["model"] == "qwen-coder"
    assert body["choices"][0]["message"]["content"].startswith("qwen-coder says: Write a python")
    metadata = body["moe_metadata"]
    assert metadata["strategy"] == "single"
    assert metadata["overrides"]["temperature"] == 0.2
    assert metadata["modalities"] == {"text": True, "images": 0, "audio": 0}
    sent = fake.calls("qwen-coder")[0].body
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9
    assert "images" not in body and "audio" not in body


async def test_a_parameter_the_client_set_is_never_tuned(client, fake):
    body = await post(client, user("Write a python function to sort a list", temperature=1.5))
    assert "temperature" not in body["moe_metadata"]["overrides"]
    assert fake.calls("qwen-coder")[0].body["temperature"] == 1.5


async def test_streaming_text(client):
    response = await client.post(
        "/v1/chat/completions", json=user("Tell me about the moon", stream=True)
    )
    assert response.headers["Content-Type"] == "text/event-stream"
    frames = [
        json.loads(line[6:])
        for line in (await response.text()).splitlines()
        if line.startswith("data: {")
    ]
    text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])
    assert text == "openai-fast says: Tell me about the moon"
    assert len(frames) > 4  # word by word, not one buffered chunk
    assert frames[-1]["moe_metadata"]["experts_used"] == ["openai-fast"]


async def test_vision_parts_reach_a_vision_model(client, fake):
    body = await post(
        client,
        {
            "model": "openai",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": PIXEL}},
                    ],
                }
            ],
        },
    )
    assert body["choices"][0]["message"]["content"].endswith("(saw 1 image)")
    sent = fake.calls("openai")[0].body["messages"][0]["content"]
    assert sent[1]["image_url"]["url"] == PIXEL


async def test_a_model_without_vision_refuses_images_clearly(client):
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "qwen-coder",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PIXEL}}]}
            ],
        },
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == "messages"
    assert "'qwen-coder'" in error["message"] and "vision" in error["message"]


async def test_image_answer_is_a_real_jpeg_from_the_fast_model(client, fake):
    body = await post(client, user("Draw a cat sitting on a fence"))
    assert body["moe_metadata"]["experts_used"] == ["flux"]
    assert body["moe_metadata"]["strategy"] == "multimodal"
    [image] = body["images"]
    assert image["model"] == "flux" and image["format"] == "image/jpeg"
    data = base64.b64decode(image["data"])
    assert jpeg_size(data) == (1024, 1024)
    assert json.loads(jpeg_comment(data))["nologo"] == "true"
    assert body["moe_metadata"]["modalities"]["images"] == 1


async def test_pictures_with_text_in_them_go_to_the_slow_detailed_model(client):
    body = await post(client, user("Draw a poster with the title 'Open Day' in big letters"))
    assert body["images"][0]["model"] == "gptimage"


async def test_image_edit_sends_the_input_image(client, fake):
    url = "https://example.org/cat.jpg"
    body = await post(
        client,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Make the cat blue"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ]
        },
    )
    assert body["images"][0]["model"] == "kontext"
    assert body["images"][0]["description"].startswith("Edited image by kontext")
    assert fake.calls("kontext")[0].query["image"] == url


async def test_speech_with_the_requested_voice(client, fake):
    body = await post(client, user("Read aloud: the quick brown fox", audio={"voice": "onyx"}))
    [audio] = body["audio"]
    assert audio["voice"] == "onyx" and audio["format"] == "audio/mpeg"
    assert mp3_frames(base64.b64decode(audio["data"])) > 0
    assert fake.calls("openai-audio")[0].body["audio"] == {"voice": "onyx", "format": "mp3"}
    assert body["moe_metadata"]["modalities"]["audio"] == 1


async def test_text_image_and_speech_in_one_answer(client, fake):
    body = await post(
        client, user("Explain how rockets work with a picture, and read the explanation aloud")
    )
    metadata = body["moe_metadata"]
    assert metadata["strategy"] == "multimodal"
    assert metadata["modalities"] == {"text": True, "images": 1, "audio": 1}
    text = body["choices"][0]["message"]["content"]
    assert text.startswith("openai-fast says: Explain how rockets work")
    assert body["audio"][0]["voice"] == "nova"  # the default voice
    # The speech model read the text answer, not the prompt.
    spoken = fake.calls("openai-audio")[0].body["messages"]
    assert spoken[-1]["content"] == text
    assert set(metadata["experts_used"]) == {"openai-fast", "flux", "openai-audio"}


async def test_combined_answer_streams_text_then_media(client):
    response = await client.post(
        "/v1/chat/completions",
        json=user("Explain how rockets work with a picture and read it aloud", stream=True),
    )
    frames = [
        json.loads(line[6:])
        for line in (await response.text()).splitlines()
        if line.startswith("data: {")
    ]
    with_media = [f for f in frames if "images" in f or "audio" in f]
    assert len(with_media) == 1
    assert len(with_media[0]["images"]) == 1 and len(with_media[0]["audio"]) == 1
    assert frames[-1]["moe_metadata"]["modalities"] == {"text": True, "images": 1, "audio": 1}
    text_frames = [f for f in frames if f["choices"] and f["choices"][0]["delta"].get("content")]
    assert len(text_frames) > 3


async def test_the_openai_sdk_gets_text_stream_and_media(gateway, expert_options, connection):
    http = await gateway(full_config(expert_options, connection))
    sdk = openai.AsyncOpenAI(base_url=str(http.make_url("/v1")), api_key="x", max_retries=0)
    completion = await sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What is a neutron star?"}]
    )
    assert completion.choices[0].message.content.startswith("openai-fast says:")
    stream = await sdk.chat.completions.create(
        model="mistral", messages=[{"role": "user", "content": "a b c"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "mistral says: a b c"
    combined = await sdk.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Draw a lighthouse and narrate a story about it"}],
    )
    extra = combined.model_extra
    assert jpeg_size(base64.b64decode(extra["images"][0]["data"])) == (1024, 1024)
    assert mp3_frames(base64.b64decode(extra["audio"][0]["data"])) > 0
    assert extra["moe_metadata"]["modalities"]["images"] == 1


async def test_the_openai_sdk_speaks_to_the_fake_directly(fake):
    """The fake is faithful enough for the SDK itself (``/openai/chat/completions``)."""
    sdk = openai.AsyncOpenAI(base_url=f"{fake.text_url}/openai", api_key="x", max_retries=0)
    completion = await sdk.chat.completions.create(
        model="openai-audio",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "mp3"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert mp3_frames(base64.b64decode(completion.choices[0].message.audio.data)) > 0
