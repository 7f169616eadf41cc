"""The ``sentence-embedding`` expert, and a vote that compares answers by meaning with it."""

from __future__ import annotations

import math

import orjson
import pytest

from moe_core import InvalidRequest
from moe_core.testing import make_moe
from tests.conftest import user

PARIS = "Paris is the capital of France."
PARAPHRASE = "France's capital city is Paris."
LYON = "The capital of France is Lyon."  # shares more words with PARIS than PARAPHRASE does


def vote(embedder: bool) -> dict:
    experts = {
        name: {"kind": "echo", "reply": reply}
        for name, reply in (("a", PARIS), ("b", PARAPHRASE), ("c", LYON))
    }
    options = {"embedder": "minilm"} if embedder else {}
    return {
        "experts": {**experts, "minilm": {"kind": "sentence-embedding"}},
        "gate": {"kind": "fixed", "expert": "a"},
        "combiner": {"kind": "parallel-vote", "experts": ["a", "b", "c"], **options},
    }


async def test_it_answers_embed_with_a_unit_vector_and_refuses_other_tasks():
    async with make_moe(vote(embedder=False)) as moe:
        same = await moe.complete(user(PARIS, model="minilm", moe={"task_type": "embed"}))
        other = await moe.complete(user(PARAPHRASE, model="minilm"))
        with pytest.raises(InvalidRequest, match="only embeds text"):
            await moe.complete(user(PARIS, model="minilm", moe={"task_type": "summarize"}))
    a, b = orjson.loads(same.result.content), orjson.loads(other.result.content)
    assert len(a) == 384 and math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-4)
    assert sum(x * y for x, y in zip(a, b, strict=True)) > 0.9
    assert same.result.usage.prompt_tokens > 0


async def test_either_runtime_answers_with_the_same_vector():
    """The default (the encoder exported to ONNX Runtime) and plain torch agree."""
    vectors = {}
    for runtime in ("onnx", "torch"):
        config = {"experts": {"minilm": {"kind": "sentence-embedding", "runtime": runtime}}}
        async with make_moe(config) as moe:
            run = await moe.complete(user(PARIS, model="minilm"))
            assert (moe.experts["minilm"].expert.encoder.session is not None) == (runtime == "onnx")
        vectors[runtime] = orjson.loads(run.result.content)
    assert vectors["onnx"] == pytest.approx(vectors["torch"], abs=1e-5)


async def test_a_vote_with_an_embedder_groups_answers_by_meaning_not_words():
    async with make_moe(vote(embedder=False)) as moe:
        by_words = await moe.complete(user("What is the capital of France?"))
    async with make_moe(vote(embedder=True)) as moe:
        by_meaning = await moe.complete(user("What is the capital of France?"))
    # Word overlap puts "Paris" and "Lyon" together (they share five words of seven).
    assert "for the answer of a, c" in by_words.metadata.notes[0]
    assert "for the answer of a, b" in by_meaning.metadata.notes[0]
    assert by_meaning.metadata.latency_ms.keys() >= {"a", "b", "c", "minilm"}
