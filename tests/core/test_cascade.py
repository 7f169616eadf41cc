"""The cascade combiner: cheap first, escalate when the scorer doubts the answer."""

from __future__ import annotations

import pytest

from moe_core import ConfigError
from moe_core.builtins.cascade import answer_check, judge_confidence, wrong_calculations
from moe_core.models import ExpertResult
from moe_core.testing import make_moe
from tests.conftest import user


def cascade(cheap: dict, *, judge_expert: dict | None = None, **options) -> dict:
    experts = {"cheap": cheap, "strong": {"kind": "echo", "prefix": "strong: "}}
    if judge_expert is not None:
        experts["judge"] = judge_expert
    return {
        "experts": experts,
        "combiner": {"kind": "cascade", "experts": ["cheap", "strong"], **options},
    }


async def test_a_sound_cheap_answer_is_kept():
    async with make_moe(cascade({"kind": "echo", "reply": "2*3 is <<2*3=6>>6"})) as moe:
        response = await moe.complete(user("what is 2*3"))
    assert response.result.content == "2*3 is <<2*3=6>>6"
    assert response.metadata.experts_used == ["cheap"] and response.metadata.fallbacks == []


async def test_a_visibly_wrong_answer_is_escalated_and_the_strong_one_streams():
    async with make_moe(cascade({"kind": "echo", "reply": "2*3 is <<2*3=7>>7"})) as moe:
        response = await moe.complete(user("what is 2*3"))
        stream = await moe.open_stream(user("what is 2*3"))
        pieces = [d.content async for d in stream if d.content]
    assert response.result.content == "strong: what is 2*3"
    assert response.metadata.experts_used == ["cheap", "strong"]
    assert "escalated: answer-check scored it 0.50" in response.metadata.fallbacks[0].error
    assert "".join(pieces) == "strong: what is 2*3" and len(pieces) > 1  # streamed live


async def test_a_failing_cheap_expert_goes_straight_to_the_strong_one():
    async with make_moe(cascade({"kind": "echo", "fail": "error"})) as moe:
        response = await moe.complete(user("hi"))
    assert response.result.content == "strong: hi"
    assert "failed as configured" in response.metadata.fallbacks[0].error


@pytest.mark.parametrize(
    ("judge_reply", "kept", "note"),
    [
        ("Confidence: 92. The arithmetic checks out.", True, None),
        ("Hmm, the second step is off. I'd give it 20/100.", False, "judge was 20% confident"),
        ("It depends on many things, I really cannot say.", False, "no usable number"),
    ],
)
async def test_the_judge_scorer_reads_a_rambling_judge(judge_reply, kept, note):
    config = cascade(
        {"kind": "echo", "reply": "six"},
        scorer="judge",
        judge="judge",
        judge_expert={"kind": "echo", "reply": judge_reply},
    )
    async with make_moe(config) as moe:
        response = await moe.complete(user("what is 2*3"))
    assert (response.result.content == "six") is kept
    if note:
        assert note in response.metadata.fallbacks[0].error


def test_scorers_and_their_parsing():
    assert judge_confidence("I am 85% sure") == 0.85
    assert judge_confidence("score: 7 out of 100") == 0.07
    assert judge_confidence("2 steps, both right: 95") == 0.95  # the concluding number
    assert judge_confidence("no idea") is None
    assert wrong_calculations("<<12/4=3>> then <<3+2=6>> and <<bad=1>>") == (3, 2)
    assert answer_check(ExpertResult(content="")) == 1.0
    assert answer_check(ExpertResult(content="I'm not sure, but maybe 4")) >= 0.5
    assert answer_check(ExpertResult(content="The answer is 4.")) == 0.0
    assert answer_check(ExpertResult(content="The answer", finish_reason="length")) == 0.4


def test_a_judge_scorer_needs_a_judge():
    with pytest.raises(ConfigError, match="scorer: judge needs judge"):
        make_moe(cascade({"kind": "echo"}, scorer="judge"))
    with pytest.raises(ConfigError, match="combiner.judge: unknown expert 'nobody'"):
        make_moe(cascade({"kind": "echo"}, scorer="judge", judge="nobody"))
