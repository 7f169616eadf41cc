"""Requests that give a gate no text to read: an empty or blank last user message, one that is
only an image, or no user message at all. They are valid chat requests and get an answer."""

from __future__ import annotations

import numpy as np
import pytest

from moe_domain_llms.lm_states import LMStates

DOMAINS = ("healthcare", "finance", "cybersecurity", "general")
SEES = {"supports_vision": True}
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/x-ray.png"}}
NO_TEXT = {
    "an empty message": [{"role": "user", "content": ""}],
    "a blank message": [{"role": "user", "content": " \n "}],
    "only an image": [{"role": "user", "content": [IMAGE]}],
    "no user message": [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ],
}


@pytest.mark.parametrize("kind", ["embedding", "tfidf-nb"])
async def test_a_domain_gate_sends_a_request_without_text_to_general_and_says_why(gateway, kind):
    # Experts that read images, so that the image-only request is theirs to answer (a text-only
    # one is a 400 naming `messages`, see tests/core/test_capabilities.py).
    experts = {name: {"kind": "echo", "card": SEES} for name in DOMAINS}
    client = await gateway({"experts": experts, "gate": {"kind": kind}})
    for case, messages in NO_TEXT.items():
        response = await client.post("/v1/chat/completions", json={"messages": messages})
        assert response.status == 200, case
        metadata = (await response.json())["moe_metadata"]
        assert metadata["experts_used"] == ["general"], case
        assert "no user text to classify" in metadata["rationale"], case
        assert "abstains to general" in metadata["rationale"], case


async def test_the_quality_cost_gate_answers_a_request_without_text(gateway):
    # Its bundled predictor reads SmolLM2's states, which an empty text has none of.
    experts = {"cheap": {"kind": "echo", "card": SEES}, "big": {"kind": "echo", "card": SEES}}
    gate = {"kind": "quality-cost", "weak": "cheap", "strong": "big"}
    client = await gateway({"experts": experts, "gate": gate})
    for case, messages in NO_TEXT.items():
        response = await client.post("/v1/chat/completions", json={"messages": messages})
        assert response.status == 200, case
        assert (await response.json())["moe_metadata"]["experts_used"][0] in experts, case


async def test_the_language_model_state_of_an_empty_text_is_zero(tiny_model):
    # Its tokenizer, like SmolLM2's, adds no start token: an empty text has no positions at all.
    lm = LMStates(tiny_model, layer=1)
    try:
        alone = await lm.encode_one("")
        beside_a_longer_text = lm.encode(["", "the quick brown fox"])
    finally:
        await lm.close()
    assert alone.shape == (32,) and not alone.any()
    assert np.array_equal(beside_a_longer_text[0], alone)
    assert beside_a_longer_text[1].any()
