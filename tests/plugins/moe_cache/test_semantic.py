"""The semantic cache over HTTP: a question worded a little differently, in the same context,
gets the answer already given; one not close enough, or in another context, goes to the expert.

The embedder is a bag of words (``conftest.bag_of_words``), so the similarity of two questions
is known exactly and each test checks it against the threshold it uses."""

from __future__ import annotations

from typing import Any

import pytest

from moe_core import MOE_KEY
from tests.plugins.moe_cache.conftest import (
    EMBEDDER,
    answer,
    ask,
    bag_of_words,
    cached,
    calls,
    chat,
    cosine,
    notes,
)

ASKED = "what is the capital of france"
CLOSE = "what is the capital of france please"
FAR = "what is the capital of spain"


def semantic(threshold: float = 0.9, **options: Any) -> dict[str, Any]:
    config = cached(
        {"a": {"kind": "echo"}, "emb": {"kind": "bag-of-words"}},
        mode="semantic",
        semantic={"embedder": "emb", "threshold": threshold},
        **options,
    )
    config["trackers"]["recorder"] = {"kind": "call-recorder"}
    return config


def embedded(client) -> list[str]:
    return client.server.app[MOE_KEY].experts["emb"].expert.embedded


async def test_a_close_question_is_answered_from_the_cache_with_its_similarity(gateway):
    similarity = cosine(bag_of_words(ASKED), bag_of_words(CLOSE))
    assert similarity >= 0.9
    client = await gateway(semantic(0.9), plugins=EMBEDDER)
    await chat(client, ask(ASKED))
    close = await chat(client, ask(CLOSE))
    assert answer(close) == ASKED  # the answer given to the first question
    assert f"'a' answered from the cache (semantic, similarity {similarity:.2f})" in notes(close)
    assert calls(client) == 1
    # The exact question is an exact hit, found before any embedding.
    before = len(embedded(client))
    assert "'a' answered from the cache (exact)" in notes(await chat(client, ask(ASKED)))
    assert len(embedded(client)) == before


async def test_a_question_below_the_threshold_goes_to_the_expert(gateway):
    assert cosine(bag_of_words(ASKED), bag_of_words(FAR)) < 0.9
    client = await gateway(semantic(0.9), plugins=EMBEDDER)
    await chat(client, ask(ASKED))
    far = await chat(client, ask(FAR))
    assert answer(far) == FAR and notes(far) == []
    assert calls(client) == 2
    # A lower threshold takes it.
    loose = await gateway(semantic(0.8), plugins=EMBEDDER)
    await chat(loose, ask(ASKED))
    assert answer(await chat(loose, ask(FAR))) == ASKED


async def test_only_questions_in_the_same_context_match(gateway):
    client = await gateway(semantic(0.9), plugins=EMBEDDER)
    await chat(client, ask(ASKED))
    system = {"role": "system", "content": "answer in french"}
    other_conversation = {**ask(CLOSE), "messages": [system, *ask(CLOSE)["messages"]]}
    for body in (ask(CLOSE, max_tokens=50), other_conversation):
        assert notes(await chat(client, body)) == []
    assert calls(client) == 3


async def test_embedding_calls_are_reported_to_trackers_with_their_cost(gateway):
    client = await gateway(semantic(0.9), plugins=EMBEDDER)
    first = await chat(client, ask(ASKED))  # a miss: the question is embedded once, then stored
    assert embedded(client) == [ASKED]
    await chat(client, ask(CLOSE))
    assert embedded(client) == [ASKED, CLOSE]
    events = client.server.app[MOE_KEY].trackers["recorder"].calls
    embeds = [event for event in events if event.expert == "emb"]
    assert [event.task_type for event in embeds] == ["embed", "embed"]
    assert embeds[0].request_id == first["moe_metadata"]["request_id"]
    assert embeds[0].usage.prompt_tokens == 6 and embeds[0].cost_usd == pytest.approx(0.006)
    assert [event.cached for event in events if event.expert == "a"] == [False, True]
    stats = await (await client.get("/-/stats")).json()
    assert stats["cache"]["semantic_entries"] == 1
    assert stats["cache"]["experts"]["a"]["hit_semantic"] == 1


async def test_an_embedder_that_fails_leaves_exact_matching_working(gateway):
    config = semantic(0.9)
    config["experts"]["emb"]["fail"] = True
    client = await gateway(config, plugins=EMBEDDER)
    await chat(client, ask(ASKED))
    assert notes(await chat(client, ask(CLOSE))) == []
    assert "'a' answered from the cache (exact)" in notes(await chat(client, ask(ASKED)))
    assert calls(client) == 2
