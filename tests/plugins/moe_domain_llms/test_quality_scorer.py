"""The ``quality-prior`` scorer: a cascade escalating on the trained predictor's prior for the
prompt, and on what the cheap answer visibly shows."""

from __future__ import annotations

import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from tests.conftest import user

QUESTION = "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many clips did she sell altogether?"  # noqa: E501


def cascade(cheap_reply: str, **scorer_options) -> dict:
    return {
        "experts": {
            "cheap": {"kind": "echo", "reply": cheap_reply},
            "strong": {"kind": "echo", "prefix": "strong: "},
        },
        "combiner": {
            "kind": "cascade",
            "experts": ["cheap", "strong"],
            "scorer": "quality-prior",
            "scorer_options": scorer_options,
        },
    }


@pytest.mark.parametrize(("threshold", "escalated"), [(1.0, True), (0.0, False)])
async def test_the_prior_decides_against_its_threshold(threshold, escalated):
    config = cascade("48 + 24 = <<48+24=72>>72\n#### 72", threshold=threshold)
    async with make_moe(config) as moe:
        response = await moe.complete(user(QUESTION))
    assert response.metadata.experts_used == (["cheap", "strong"] if escalated else ["cheap"])
    if escalated:
        why = response.metadata.fallbacks[0].error
        assert "P(cheap answer as good) = 0." in why and "threshold 1.000" in why


async def test_a_visibly_wrong_answer_escalates_even_when_the_prior_trusts_the_prompt():
    wrong = "48 + 24 = <<48+24=70>>70\n#### 70"
    async with make_moe(cascade(wrong, threshold=0.0)) as moe:
        checked = await moe.complete(user(QUESTION))
    async with make_moe(cascade(wrong, threshold=0.0, answer_check=False)) as moe:
        prior_only = await moe.complete(user(QUESTION))
    assert checked.metadata.experts_used == ["cheap", "strong"]
    assert "answer-check 0.50" in checked.metadata.fallbacks[0].error
    assert prior_only.metadata.experts_used == ["cheap"]


def test_bad_scorer_options_stop_startup():
    with pytest.raises(ConfigError, match="not both"):
        make_moe(cascade("x", threshold=0.5, target_strong_share=0.3))
    with pytest.raises(ConfigError, match="combiner.scorer_options.artefact"):
        make_moe(cascade("x", artefact="/nonexistent/quality.npz"))


def answer_quality(cheap_reply: str) -> dict:
    config = cascade(cheap_reply)
    config["combiner"]["scorer"] = "answer-quality"
    del config["combiner"]["scorer_options"]
    return config


async def test_the_trained_answer_model_keeps_a_sound_answer_and_escalates_a_broken_one():
    sound = "In May she sold 48 / 2 = <<48/2=24>>24 clips.\nAltogether 48 + 24 = <<48+24=72>>72.\n#### 72"  # noqa: E501
    broken = "I think it's maybe 48 + 24 = <<48+24=70>>70, wait, not sure.\n#### 70.5"
    async with make_moe(answer_quality(sound)) as moe:
        kept = await moe.complete(user(QUESTION))
    async with make_moe(answer_quality(broken)) as moe:
        escalated = await moe.complete(user(QUESTION))
    assert kept.metadata.experts_used == ["cheap"]
    assert escalated.metadata.experts_used == ["cheap", "strong"]
    assert "the trained answer model puts P(wrong) at" in escalated.metadata.fallbacks[0].error


def test_a_missing_answer_model_says_how_to_rebuild_it(tmp_path):
    config = answer_quality("x")
    config["combiner"]["scorer_options"] = {"artefact": str(tmp_path / "none.npz")}
    with pytest.raises(ConfigError, match="does not exist; rebuild it with .*answer_quality.fit"):
        make_moe(config)
