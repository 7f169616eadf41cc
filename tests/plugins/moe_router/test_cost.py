"""Cost prediction: token estimates, min/expected/max cost, and budget caps the gateway honours."""

from __future__ import annotations

import pytest

from moe_core.errors import BudgetExceeded
from moe_core.models import ChatRequest
from moe_core.testing import make_moe
from moe_router.cost import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    budget_output_cap,
    estimate_tokens,
    predict_cost,
)


def request(text: str, **extra) -> ChatRequest:
    return ChatRequest.model_validate(
        {"messages": [{"role": "user", "content": text}], **extra}, strict=False
    )


def test_prompt_tokens_are_four_characters_each_plus_framing_images_and_stated_context():
    estimate = estimate_tokens(request("x" * 400), "code_generation")
    assert estimate.input_tokens == 100 + MESSAGE_OVERHEAD_TOKENS
    assert (estimate.output_min, estimate.output_expected) == (100, 400)

    picture = ChatRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "y" * 40},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                    ],
                }
            ]
        }
    )
    assert (
        estimate_tokens(picture, None).input_tokens == 10 + MESSAGE_OVERHEAD_TOKENS + IMAGE_TOKENS
    )

    stated = request("short", moe={"metadata": {"context_tokens": 50_000}})
    estimate = estimate_tokens(stated, "long_context")
    assert (estimate.input_tokens, estimate.source) == (50_000, "moe.metadata.context_tokens")


def test_a_callers_max_tokens_bounds_the_expected_answer():
    estimate = estimate_tokens(request("hi", max_tokens=50), "security_audit")
    assert estimate.output_expected == 50
    assert estimate.output_max(card_max_output=8000) == 50


def test_min_expected_and_max_cost_with_the_budget_flag():
    estimate = estimate_tokens(request("x" * 3996), "general")  # 999 + 4 = 1003 tokens
    prediction = predict_cost(1.0, 2.0, 4096, estimate, budget_usd=1.0)
    assert prediction.input_tokens == 1003
    assert prediction.expected_usd == pytest.approx(1.003 + 300 * 0.002)
    assert prediction.min_usd == pytest.approx(1.003 + 75 * 0.002)
    assert prediction.max_usd == pytest.approx(1.003 + 4096 * 0.002)
    assert prediction.within_budget is False
    assert predict_cost(1.0, 2.0, None, estimate, None).within_budget is None
    evidence = prediction.evidence("m")
    assert evidence["output_tokens"] == {"min": 75, "expected": 300, "max": 4096}


async def test_the_budget_cap_passes_the_gateways_check_and_a_few_tokens_more_do_not():
    card = {"cost_per_1k_input": 0.01, "cost_per_1k_output": 0.03, "max_output_tokens": 4096}
    moe = make_moe({"experts": {"paid": {"kind": "echo", "card": card}}})
    body = {"messages": [{"role": "user", "content": "z" * 400}], "moe": {"budget_usd": 0.01}}
    cap = budget_output_cap(0.01, 0.03, estimate_tokens(moe.parse(body), None), 0.01)
    assert cap > 0
    async with moe:
        await moe.complete({**body, "max_tokens": cap})
        with pytest.raises(BudgetExceeded):
            await moe.complete({**body, "max_tokens": cap + 5})
