"""The cascade combiner: cheap first, escalate when the scorer doubts the answer."""

from __future__ import annotations

import pytest

from moe_core import ConfigError, Options, PluginError, Scorer, Verdict, hookimpl
from moe_core.answers import answer_check, wrong_calculations
from moe_core.models import ExpertResult
from moe_core.testing import make_moe
from moe_strategies.scorers import judge_confidence
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
        ("0.9", True, None),  # a fraction, not 0.9 out of 100
        ("0.3", False, "judge was 30% confident"),
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


@pytest.mark.parametrize(
    ("reply", "confidence"),
    [
        ("0.9", 0.9),
        ("0.85", 0.85),
        ("Confidence: 0.7", 0.7),
        ("90", 0.9),
        ("90%", 0.9),
        ("90/100", 0.9),
        ("8/10", 0.8),
        ("1", 0.01),  # a whole number is on the 0 to 100 scale the judge was asked for
        ("Confidence (0-100): 85", 0.85),  # the scale repeated back is not the verdict
    ],
)
def test_the_judge_is_read_on_the_scale_it_answers_in(reply, confidence):
    assert judge_confidence(reply) == pytest.approx(confidence)


async def test_naming_a_judge_is_enough_to_have_it_judge():
    config = cascade(
        {"kind": "echo", "reply": "six"},
        judge="judge",
        judge_expert={"kind": "echo", "reply": "10"},
    )
    async with make_moe(config) as moe:
        response = await moe.complete(user("what is 2*3"))
    assert response.result.content == "strong: what is 2*3"
    assert "the judge was 10% confident" in response.metadata.fallbacks[0].error
    assert response.metadata.experts_used == ["cheap", "judge", "strong"]


def test_a_judge_with_another_scorer_is_a_config_error():
    with pytest.raises(
        ConfigError,
        match="combiner: judge: judge is the expert of scorer: judge, "
        "but scorer is 'answer-check': write scorer: judge",
    ):
        make_moe(
            cascade(
                {"kind": "echo"},
                scorer="answer-check",
                judge="judge",
                judge_expert={"kind": "echo", "reply": "90"},
            )
        )


def test_a_judge_scorer_needs_a_judge():
    with pytest.raises(ConfigError, match="scorer: judge needs judge"):
        make_moe(cascade({"kind": "echo"}, scorer="judge"))
    with pytest.raises(ConfigError, match="combiner.judge: unknown expert 'nobody'"):
        make_moe(cascade({"kind": "echo"}, scorer="judge", judge="nobody"))


class LengthScorer(Scorer):
    """A plugin's scorer: doubts answers shorter than ``min_words``."""

    def __init__(self, name: str, options: LengthScorerOptions) -> None:
        super().__init__(name, options)
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def score(self, run, answer: ExpertResult) -> Verdict:
        words = len(answer.content.split())
        doubt = 1.0 if words < self.options.min_words else 0.0
        return Verdict(doubt, f"{words} words against a minimum of {self.options.min_words}")


class LengthScorerOptions(Options):
    min_words: int


class ScorerPlugin:
    @hookimpl
    def moe_register_scorers(self, register) -> None:
        register("length", LengthScorer, options=LengthScorerOptions)


@pytest.mark.parametrize(("reply", "escalated"), [("ok", True), ("a complete answer here", False)])
async def test_a_scorer_from_a_plugin_decides_escalation(reply, escalated):
    config = cascade(
        {"kind": "echo", "reply": reply}, scorer="length", scorer_options={"min_words": 3}
    )
    async with make_moe(config, plugins=[("length", ScorerPlugin())]) as moe:
        scorer = moe.default_combiner.scorer
        response = await moe.complete(user("explain"))
    assert isinstance(scorer, LengthScorer) and scorer.started
    assert response.metadata.experts_used == (["cheap", "strong"] if escalated else ["cheap"])
    if escalated:
        assert "1 words against a minimum of 3" in response.metadata.fallbacks[0].error


def test_an_unknown_scorer_or_bad_scorer_options_stop_startup():
    with pytest.raises(PluginError, match="scorer kind 'lenght'"):
        make_moe(cascade({"kind": "echo"}, scorer="lenght"), plugins=[("length", ScorerPlugin())])
    with pytest.raises(ConfigError, match="combiner.scorer_options.min_words"):
        make_moe(
            cascade({"kind": "echo"}, scorer="length", scorer_options={"min_words": "many"}),
            plugins=[("length", ScorerPlugin())],
        )
