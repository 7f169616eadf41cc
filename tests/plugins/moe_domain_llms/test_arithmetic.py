"""Plain arithmetic in a question is worked out exactly; everything else is left to the model."""

from __future__ import annotations

import pytest

from moe_core.testing import make_moe
from moe_domain_llms.arithmetic import find
from tests.conftest import user

SUM = "17 \N{MULTIPLICATION SIGN} 23"


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        (f"What is {SUM}?", f"{SUM} = 391"),
        ("17*23", "17*23 = 391"),
        ("what's 7 x 8?", "7 x 8 = 56"),
        ("Calculate (12 + 8) * 3", "(12 + 8) * 3 = 60"),
        ("What is 2^10?", "2^10 = 1024"),
        ("what is 1,250 + 3,750?", "1,250 + 3,750 = 5000"),
        ("10 ÷ 4", "10 ÷ 4 = 2.5"),
        ("What is 10/3?", "10/3 ≈ 3.3333333333"),
        ("0.1 + 0.2", "0.1 + 0.2 = 0.3"),  # exact, not 0.30000000000000004
        ("-5 \N{MINUS SIGN} 3 =", "-5 \N{MINUS SIGN} 3 = -8"),
    ],
)
def test_a_message_that_is_only_arithmetic_is_worked_out(message, answer):
    found = find(message)
    assert found is not None and found.whole_message
    assert [str(c) for c in found.calculations] == [answer]


def test_arithmetic_inside_a_longer_question_is_found_for_the_model():
    found = find("I bought 12.50 + 7.25 worth of lunch and 3 x 4 snacks; what did I spend?")
    assert found is not None and not found.whole_message
    assert [str(c) for c in found.calculations] == ["12.50 + 7.25 = 19.75", "3 x 4 = 12"]


@pytest.mark.parametrize(
    "message",
    [
        "hi",
        "Take it 1-2 times a day",  # a range
        "Add 3/4 cup of flour",  # a fraction in a recipe
        "Meet me on 2024-05-01",  # a date
        "What is 5 / 0?",  # undefined: left to the model
        "9^9^9",  # too large to work out: left to the model
        "__import__('os').system('true')",  # no names, no calls
        "What is 2 ** 1000000?",
    ],
)
def test_no_calculation_where_there_is_no_plain_arithmetic(message):
    assert find(message) is None


def local(model: str, **options) -> dict:
    return {"experts": {"tiny": {"kind": "hf-causal-lm", "model": model, **options}}}


async def test_the_expert_answers_plain_arithmetic_itself(tiny_model):
    async with make_moe(local(tiny_model)) as moe:
        response = await moe.complete(user(f"What is {SUM}?"))
        stream = await moe.open_stream(user(f"What is {SUM}?"))
        deltas = [delta async for delta in stream]
    assert response.result.content == f"{SUM} = 391"
    assert response.result.finish_reason == "stop"
    assert response.result.usage.completion_tokens > 0
    assert "".join(d.content or "" for d in deltas) == f"{SUM} = 391"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage == response.result.usage


async def test_the_model_is_given_the_exact_result_for_arithmetic_in_a_question(tiny_model):
    question = f"If a box holds {SUM} apples, how many boxes do I need for 1000 apples?"
    async with make_moe(local(tiny_model)) as moe:
        expert = moe.experts["tiny"].expert
        told = expert.count_tokens(moe.parse(user(question)))
        response = await moe.complete(user(question, max_tokens=3))
    async with make_moe(local(tiny_model, calculator=False)) as moe:
        untold = moe.experts["tiny"].expert.count_tokens(moe.parse(user(question)))
        plain = await moe.complete(user(f"What is {SUM}?", max_tokens=3))
    assert response.result.usage.completion_tokens == 3  # the model answered
    assert told > untold  # "(Calculator: 17 times 23 = 391.)" was added beside the question
    assert plain.result.usage.completion_tokens == 3  # turned off: the model answers
