"""`moe serve` with the embedded default (no config, no network) answers ``POST /v1/embeddings``
with ``model: auto``: a separate server process on loopback (the session's ``default_gateway``),
used by the official openai SDK."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.slow
EMBEDDER = "all-minilm-l6-v2"


def test_the_default_gateway_embeds_offline(default_gateway):
    client = openai.OpenAI(base_url=f"{default_gateway}/v1", api_key="not-needed", max_retries=0)
    answer = client.embeddings.create(
        model="auto", input=["a cat sat on the mat", "a kitten rested on the rug", "tax return"]
    )
    assert answer.model == EMBEDDER and len(answer.data) == 3
    cat, kitten, tax = (item.embedding for item in answer.data)
    assert len(cat) == 384

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(cat, kitten) > cosine(cat, tax)
    assert EMBEDDER in [model.id for model in client.models.list()]
