"""Failure paths: a modality that fails degrades to the others, 429s are retried as asked, a text
model that times out hands over to the next model of the fallback chain."""

from __future__ import annotations

import itertools
import json

import pytest

from moe_pollinations.testing import ModelBehaviour
from tests.conftest import user
from tests.plugins.moe_pollinations.conftest import full_config

COMBINED = "Explain how rockets work with a picture, and read the explanation aloud"


async def test_image_models_down_gives_the_text_answer_with_a_note(
    gateway, fake, expert_options, connection
):
    for model in ("flux", "turbo"):
        fake.behaviour[model] = ModelBehaviour(status=500)
    client = await gateway(
        full_config(expert_options, connection, experts={"flux": {"max_retries": 0}})
    )
    response = await client.post("/v1/chat/completions", json=user(COMBINED))
    body = await response.json()
    assert response.status == 200, body
    assert body["choices"][0]["message"]["content"].startswith("openai-fast says:")
    assert "images" not in body and len(body["audio"]) == 1
    metadata = body["moe_metadata"]
    assert metadata["modalities"] == {"text": True, "images": 0, "audio": 1}
    assert any(
        note.startswith("image: every expert failed (flux, turbo)") for note in metadata["notes"]
    )
    assert [record["expert"] for record in metadata["fallbacks"]] == ["flux", "turbo"]


async def test_a_failed_image_model_falls_back_to_the_next_one(
    gateway, fake, expert_options, connection
):
    fake.behaviour["flux"] = ModelBehaviour(status=500)
    client = await gateway(full_config(expert_options, connection))
    body = await (await client.post("/v1/chat/completions", json=user("Draw a cat"))).json()
    assert body["images"][0]["model"] == "turbo"
    assert body["moe_metadata"]["fallbacks"][0]["expert"] == "flux"


async def test_speech_down_keeps_text_and_picture(gateway, fake, expert_options, connection):
    fake.behaviour["openai-audio"] = ModelBehaviour(status=400)
    client = await gateway(full_config(expert_options, connection))
    body = await (await client.post("/v1/chat/completions", json=user(COMBINED))).json()
    assert body["moe_metadata"]["modalities"] == {"text": True, "images": 1, "audio": 0}
    assert any(
        note.startswith("speech: every expert failed") for note in body["moe_metadata"]["notes"]
    )


async def test_everything_down_is_an_error_naming_each_failure(
    gateway, fake, expert_options, connection
):
    fake.default = ModelBehaviour(status=400)
    client = await gateway(full_config(expert_options, connection))
    response = await client.post("/v1/chat/completions", json=user("Draw a cat"))
    assert response.status == 502
    message = (await response.json())["error"]["message"]
    assert "every modality failed" in message and "flux" in message and "turbo" in message


async def test_rate_limit_is_retried_after_retry_after_end_to_end(
    gateway, fake, expert_options, connection
):
    fake.behaviour["openai-fast"] = ModelBehaviour(status=429, fail_times=2, retry_after="0.5")
    client = await gateway(full_config(expert_options, connection))
    body = await (await client.post("/v1/chat/completions", json=user("hello there"))).json()
    assert body["choices"][0]["message"]["content"] == "openai-fast says: hello there"
    attempts = fake.calls("openai-fast")
    assert len(attempts) == 3
    assert all(b.at - a.at >= 0.45 for a, b in itertools.pairwise(attempts))
    assert body["moe_metadata"]["fallbacks"] == []


@pytest.mark.parametrize("limit", ["timeout_s", "request_timeout_s"])
async def test_a_text_model_timing_out_hands_over_to_the_next(
    gateway, fake, expert_options, connection, limit
):
    """The gateway's per-expert limit and the expert's own Pollinations limit both hand over."""
    fake.behaviour["openai-fast"] = ModelBehaviour(delay_s=5)
    client = await gateway(
        full_config(expert_options, connection, experts={"openai-fast": {limit: 0.3}})
    )
    body = await (await client.post("/v1/chat/completions", json=user("hello there"))).json()
    assert body["model"] == "openai"
    assert body["choices"][0]["message"]["content"] == "openai says: hello there"
    [fallback] = body["moe_metadata"]["fallbacks"]
    assert fallback["expert"] == "openai-fast" and "within 0.3 s" in fallback["error"]


async def test_a_streamed_text_model_timing_out_hands_over_before_the_first_byte(
    gateway, fake, expert_options, connection
):
    fake.behaviour["openai-fast"] = ModelBehaviour(delay_s=5)
    client = await gateway(
        full_config(expert_options, connection, experts={"openai-fast": {"timeout_s": 0.3}})
    )
    response = await client.post("/v1/chat/completions", json=user("hello there", stream=True))
    frames = [
        json.loads(line[6:])
        for line in (await response.text()).splitlines()
        if line.startswith("data: {")
    ]
    text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])
    assert text == "openai says: hello there"
    assert frames[-1]["moe_metadata"]["fallbacks"][0]["expert"] == "openai-fast"


async def test_an_unreachable_host_is_a_503_that_hands_over_when_streaming(
    gateway, fake, expert_options, connection
):
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    client = await gateway(
        full_config(
            expert_options,
            connection,
            experts={"openai-fast": {"text_base_url": dead, "max_retries": 0}},
        )
    )
    response = await client.post("/v1/chat/completions", json=user("hello", stream=True))
    text = await response.text()
    frames = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    words = [f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"]]
    assert "".join(words) == "openai says: hello"
    [fallback] = frames[-1]["moe_metadata"]["fallbacks"]
    assert fallback["expert"] == "openai-fast"
    direct = await client.post("/v1/chat/completions", json={**user("hi"), "model": "openai-fast"})
    assert direct.status == 503
    assert "openai-fast" in (await direct.json())["error"]["message"]
