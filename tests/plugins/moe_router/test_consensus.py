"""parallel-vote, quality-weighted and judge: compare conclusions, not wording."""

from __future__ import annotations

import json

import pytest

from moe_core.models import ExpertResult
from moe_core.testing import make_moe
from moe_router.consensus import final_answer, group_answers, judged_pick
from tests.conftest import user


def expert(reply: str, quality: float | None = None, **extra) -> dict:
    card = {"quality": quality} if quality is not None else {}
    return {"kind": "echo", "reply": reply, "card": card, **extra}


def config(kind: str, experts: dict, **options) -> dict:
    return {"experts": experts, "combiner": {"kind": kind, "experts": list(experts), **options}}


def test_final_answers_are_extracted_and_normalised():
    assert final_answer("so 9 * 2 = 18\n#### 18") == "18"
    assert final_answer("The answer is 1,200.") == "1200"
    assert final_answer("we get \\boxed{3/4}") == "3/4"
    assert final_answer("She makes $18.00 a day") == "18"
    assert final_answer("Paris is the capital of France") is None


def test_free_text_answers_group_by_word_overlap():
    answers = [
        (n, ExpertResult(content=t))
        for n, t in [
            ("a", "Paris is the capital of France"),
            ("b", "The capital of France is Paris"),
            ("c", "Lyon is the biggest city"),
        ]
    ]
    assert group_answers(answers, 0.6) == [[0, 1], [2]]


def test_free_text_answers_group_by_embedding_when_given():
    answers = [(n, ExpertResult(content=n)) for n in "abc"]
    vectors = [[1.0, 0.0], [0.96, 0.28], [0.6, 0.8]]  # cosines with a: 0.96 and 0.6
    assert group_answers(answers, 0.6, vectors, semantic_similarity=0.85) == [[0, 1], [2]]


async def test_a_failing_embedder_leaves_the_vote_to_word_overlap():
    experts = {
        "a": expert("Paris is the capital of France"),
        "b": expert("The capital of France is Paris"),
        "c": expert("Lyon is the biggest city"),
    }
    setup = config("parallel-vote", experts, embedder="embedder")
    setup["experts"]["embedder"] = expert("not a vector")
    async with make_moe(setup) as moe:
        response = await moe.complete(user("capital of France?"))
    assert "embedder 'embedder' failed (not a vector" in response.metadata.notes[0]
    assert "votes: 2 of 3 for the answer of a, b" in response.metadata.notes[1]


async def test_the_majority_wins_whatever_the_wording():
    experts = {
        "a": expert("16 - 7 = 9 eggs, 9 * 2 = 18.\n#### 18"),
        "b": expert("She sells 9 eggs, so the answer is 18"),
        "c": expert("She makes $26 a day", quality=0.9),
        "d": expert("x", fail="error"),
    }
    async with make_moe(config("parallel-vote", experts)) as moe:
        response = await moe.complete(user("how much does she make?"))
    assert final_answer(response.result.content) == "18"
    assert "votes: 2 of 3 for the answer of a, b" in response.metadata.notes[0]
    assert [f.expert for f in response.metadata.fallbacks] == ["d"]


async def test_quality_weighting_can_outvote_a_weak_majority():
    experts = {
        "weak1": expert("#### 20", quality=0.2),
        "weak2": expert("#### 20", quality=0.2),
        "strong": expert("#### 18", quality=0.9),
    }
    async with make_moe(config("parallel-vote", experts)) as moe:
        assert final_answer((await moe.complete(user("?"))).result.content) == "20"
    async with make_moe(config("quality-weighted", experts)) as moe:
        response = await moe.complete(user("?"))
    assert final_answer(response.result.content) == "18"
    assert "quality-weighted votes: 0.9 of 1.3" in response.metadata.notes[0]


@pytest.mark.parametrize(
    ("verdict", "chosen", "note"),
    [
        (
            "Best: 2\nIt shows its working and the arithmetic is right.",
            "#### 18",
            "the judge picked b: Best: 2",
        ),
        ("Only candidate 1 keeps the units right.", "#### 20", "the judge picked a"),
        (
            "Well, candidate 1 rounds wrongly, while answer [2] is exact.",
            "#### 18",
            "settled on no candidate",
        ),
        ("Both have merits and I cannot decide.", "#### 18", "settled on no candidate"),
    ],
)
async def test_the_judge_picks_with_a_reason_and_survives_rambling(verdict, chosen, note):
    experts = {
        "a": expert("#### 20", quality=0.3),
        "b": expert("#### 18", quality=0.8),
        "referee": expert(verdict),
    }
    cfg = {
        "experts": experts,
        "combiner": {"kind": "judge", "experts": ["a", "b"], "judge": "referee"},
    }
    async with make_moe(cfg) as moe:
        response = await moe.complete(user("how much?"))
    assert response.result.content == chosen
    assert note in response.metadata.notes[0]


def test_judged_pick_reads_common_phrasings():
    assert judged_pick("Best: 3", 3) == 2
    assert judged_pick("best answer is [1]", 2) == 0
    assert judged_pick("I prefer candidate #2.", 2) == 1
    assert judged_pick("Best: 7", 3) is None
    assert judged_pick("The best is 2; candidate 1 is wrong", 2) == 1


async def test_votes_over_http_stream_the_winner(gateway):
    experts = {"a": expert("#### 5"), "b": expert("so it is 5"), "c": expert("#### 6")}
    client = await gateway(config("parallel-vote", experts))
    response = await client.post("/v1/chat/completions", json=user("2+3?", stream=True))
    text = await response.text()
    assert "votes: 2 of 3" in text and text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("kind", "helpers"),
    [
        ("parallel-vote", {"embedder": "embedder"}),
        ("quality-weighted", {}),
        ("judge", {"judge": "referee"}),
    ],
)
async def test_the_answer_is_credited_to_its_expert_not_to_whoever_helped_pick_it(
    gateway, kind, helpers, stream
):
    experts = {
        "a": expert("#### 5", quality=0.9),
        "b": expert("so it is 5", quality=0.5),
        "c": expert("#### 6", quality=0.2),  # called last of the three
        "referee": expert("Best: 1, it shows its working."),
        "embedder": expert("[1.0, 0.0]"),
    }
    combiner = {"kind": kind, "experts": ["a", "b", "c"], **helpers}
    client = await gateway({"experts": experts, "combiner": combiner})
    response = await client.post("/v1/chat/completions", json=user("2+3?", stream=stream))
    assert response.status == 200
    if stream:
        chunks = [
            json.loads(line[6:])
            for line in (await response.text()).splitlines()
            if line.startswith("data: {")
        ]
        models, metadata = {chunk["model"] for chunk in chunks}, chunks[-1]["moe_metadata"]
    else:
        body = await response.json()
        models, metadata = {body["model"]}, body["moe_metadata"]
    assert models == {"a"}
    assert set(metadata["experts_used"]) == {"a", "b", "c", *helpers.values()}
