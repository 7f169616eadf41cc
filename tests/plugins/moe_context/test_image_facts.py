"""The offline image-facts expert: a text-only expert answers about an image with no vision
model, from its size, format, colours and the text OCR reads in it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.plugins.moe_context.samples import data_url, png
from tests.plugins.moe_context.test_images import image_question


def offline(**facts) -> dict:
    return {
        "experts": {
            "chat": {"kind": "echo"},
            "facts": {"kind": "image-facts", **facts},
        },
        "gate": {"kind": "fixed", "expert": "chat"},
        "preparers": {"images": {"kind": "describe-images", "describer": "facts"}},
    }


async def ask(gateway, config, messages) -> dict:
    client = await gateway(config)
    response = await client.post("/v1/chat/completions", json={"messages": messages})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_text_only_expert_gets_the_images_size_format_and_colours(gateway):
    body = await ask(
        gateway,
        offline(ocr="off"),
        image_question(data_url(png((30, 80, 220), size=(120, 40)))),
    )
    answer = body["choices"][0]["message"]["content"]
    assert "[Image 1, as described by facts: Image 1: a PNG image, 120x40 pixels (landscape)" in (
        answer
    )
    assert "Main colours: blue 100%" in answer
    assert "Text in it was not read (OCR is off)" in answer
    assert body["moe_metadata"]["experts_used"] == ["facts", "chat"]


async def test_colours_are_named_with_their_share(gateway):
    image = Image.new("RGB", (100, 100), "white")
    image.paste((220, 30, 30), (0, 0, 100, 25))  # a red band over a quarter
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    body = await ask(
        gateway,
        offline(ocr="off", colours=2),
        image_question(data_url(buffer.getvalue(), "image/jpeg")),
    )
    answer = body["choices"][0]["message"]["content"]
    assert "a JPEG image, 100x100 pixels (square)" in answer
    assert "Main colours: white 75%, red 25%" in answer


async def test_an_unreadable_image_becomes_a_placeholder(gateway):
    body = await ask(
        gateway, offline(ocr="off"), image_question("data:image/png;base64,bm90IGFuIGltYWdl")
    )
    answer = body["choices"][0]["message"]["content"]
    assert "[Image 1 could not be described by facts (image 1 cannot be read:" in answer
    assert any("could not be described" in n for n in body["moe_metadata"]["notes"])


@pytest.mark.slow  # RapidOCR's first image takes seconds on two cores
async def test_ocr_reads_the_text_in_an_image(gateway):
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra of moe-context")
    image = png((255, 255, 255), size=(420, 90), text="SALE 42")
    body = await ask(gateway, offline(ocr="on"), image_question(data_url(image)))
    answer = body["choices"][0]["message"]["content"]
    read = answer.partition("Text in it (OCR, in reading order): ")[2]
    assert read.replace('" / "', " ").startswith('"SALE 42"')
    assert "Main colours: white" in answer
