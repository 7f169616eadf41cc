"""Images described for text-only experts: through a reasoning chain, concurrently, once per
request, and with a clear placeholder when the describer fails."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from moe_core import ChatRequest, ConfigError, Expert, ExpertCard, ExpertResult, hookimpl
from moe_core.testing import make_moe
from tests.plugins.moe_context.conftest import VISION_CARD, openai_expert, text_expert
from tests.plugins.moe_context.samples import data_url, png

QUESTION = "What does the sign say?"


def image_question(*images: str, text: str = QUESTION) -> list[dict]:
    parts = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return [{"role": "user", "content": parts}]


async def sdk(gateway, config, plugins=()) -> openai.AsyncOpenAI:
    client = await gateway(config, plugins=plugins)
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)


async def test_a_text_only_chain_streams_thinking_about_the_vision_experts_description(
    gateway, openai_fake
):
    text, text_url = await openai_fake()  # answers "echo: <its last message>"
    vision, vision_url = await openai_fake(reply="A red sign reading SALE 42 in white letters.")
    config = {
        "experts": {
            "thinker": text_expert(text_url),
            "doer": text_expert(text_url),
            "vision": openai_expert(vision_url, card=VISION_CARD),
        },
        "combiner": {
            "kind": "chain",
            "preset": "reasoning-execution",
            "reasoner": "thinker",
            "executor": "doer",
        },
        "preparers": {"images": {"kind": "describe-images", "describer": "vision"}},
    }
    client = await sdk(gateway, config)
    image = data_url(png())
    stream = await client.chat.completions.create(
        model="auto", stream=True, messages=image_question(image)
    )
    chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    metadata = next(
        c.model_extra["moe_metadata"] for c in chunks if "moe_metadata" in c.model_extra
    )

    thinking, _, answer = content.partition("\n</think>\n\n")
    assert thinking.startswith("<think>\necho: What does the sign say?")
    assert "[Image 1, as described by vision: A red sign reading SALE 42" in thinking
    assert "SALE 42" in answer
    # The vision model saw the image itself, once for the whole request.
    assert len(vision.requests) == 1
    seen = vision.requests[0]["messages"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": image}} in seen
    assert QUESTION in seen[0]["text"]
    # The text-only models never got an image, and both got the description.
    assert [r["model"] for r in text.requests] == ["thinker", "doer"]
    for request in text.requests:
        assert "image_url" not in json.dumps(request)
        assert "A red sign reading SALE 42" in request["messages"][-1]["content"]
    assert metadata["experts_used"] == ["vision", "thinker", "doer"]
    assert any("'thinker' reads no images" in note for note in metadata["notes"])
    assert any("'doer' reads no images" in note for note in metadata["notes"])


async def test_a_vision_expert_gets_the_image_itself(gateway, openai_fake):
    vision, vision_url = await openai_fake(reply="I see red.")
    config = {
        "experts": {"vision": openai_expert(vision_url, card=VISION_CARD)},
        "preparers": {"images": {"kind": "describe-images", "describer": "vision"}},
    }
    client = await sdk(gateway, config)
    image = data_url(png())
    answer = await client.chat.completions.create(model="vision", messages=image_question(image))
    assert answer.choices[0].message.content == "I see red."
    assert len(vision.requests) == 1  # no description was asked for
    assert vision.requests[0]["messages"][0]["content"][1]["image_url"]["url"] == image
    assert not any("reads no images" in n for n in answer.model_extra["moe_metadata"]["notes"])


async def test_a_failing_describer_leaves_a_placeholder_and_a_note(gateway, openai_fake):
    text, text_url = await openai_fake()
    _, vision_url = await openai_fake(status=500)
    config = {
        "experts": {
            "writer": text_expert(text_url),
            "vision": openai_expert(vision_url, card=VISION_CARD),
        },
        "gate": {"kind": "fixed", "expert": "writer"},
        "preparers": {"images": {"kind": "describe-images", "describer": "vision"}},
    }
    client = await sdk(gateway, config)
    answer = await client.chat.completions.create(
        model="auto", messages=image_question(data_url(png()))
    )
    sent = text.requests[0]["messages"][-1]["content"]
    assert sent.startswith(QUESTION)
    assert "[Image 1 could not be described by vision (" in sent and "it was left out.]" in sent
    assert "image_url" not in json.dumps(text.requests[0])
    notes = answer.model_extra["moe_metadata"]["notes"]
    assert any("image 1 could not be described by 'vision'" in n for n in notes)


class CountingVision(Expert):
    """Describes an image after a pause, counting how many descriptions run at once."""

    running = 0
    most = 0
    calls = 0

    def card(self) -> ExpertCard:
        return ExpertCard(supports_vision=True)

    async def generate(self, request: ChatRequest) -> ExpertResult:
        cls = CountingVision
        cls.calls += 1
        cls.running += 1
        cls.most = max(cls.most, cls.running)
        await asyncio.sleep(0.2)
        cls.running -= 1
        url = request.messages[0].content[1].image_url["url"]
        return ExpertResult(content=f"picture of {len(url)} characters")


class VisionPlugin:
    @hookimpl
    def moe_register_experts(self, register):
        register("counting-vision", CountingVision)


async def test_images_are_described_at_once_and_once_per_request(gateway):
    CountingVision.running = CountingVision.most = CountingVision.calls = 0
    config = {
        "experts": {
            "a": {"kind": "echo"},
            "b": {"kind": "echo"},
            "eyes": {"kind": "counting-vision"},
        },
        "combiner": {"kind": "concat", "experts": ["a", "b"]},
        "preparers": {"images": {"kind": "describe-images", "describer": "eyes"}},
    }
    client = await sdk(gateway, config, plugins=[("vision", VisionPlugin())])
    images = [data_url(png((i * 80, 40, 40))) for i in range(3)]
    answer = await client.chat.completions.create(
        model="auto",
        messages=image_question(*images, images[0]),  # the first one twice
    )
    content = answer.choices[0].message.content
    assert CountingVision.calls == 3  # three distinct images, two experts: three descriptions
    assert CountingVision.most == 3  # all at once
    for number in (1, 2, 3):
        assert (
            content.count(f"[Image {number}, as described by eyes: picture of")
            == 2 + (number == 1) * 2
        )  # each expert's echo; image 1 appears twice in the message


def test_a_describer_that_cannot_see_is_a_startup_error():
    config = {
        "experts": {"a": {"kind": "echo"}, "b": {"kind": "echo"}},
        "preparers": {"images": {"kind": "describe-images", "describer": "b"}},
    }
    with pytest.raises(ConfigError, match=r"preparers.images.describer: expert 'b' reads no"):
        make_moe(config)
    with pytest.raises(ConfigError, match=r"preparers.images.describer: unknown expert 'c'"):
        make_moe({**config, "preparers": {"images": {"kind": "describe-images", "describer": "c"}}})
