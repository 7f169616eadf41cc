"""Experts that count a prompt in their own tokens: the multi-factor gate checks context windows
and predicts cost from that count, and from the characters-per-token estimate for the others."""

from __future__ import annotations

from pydantic import Field

from moe_core.models import ChatRequest
from moe_core.plugins import Register, hookimpl
from moe_core.testing import EchoExpert, EchoOptions, make_moe
from tests.plugins.moe_router.helpers import ask, evidence, filtered


class CountingOptions(EchoOptions):
    tokens: int | None = Field(None, description="What count_tokens says")
    broken: bool = False


class CountingExpert(EchoExpert):
    """An echo expert with a tokenizer that counts ``tokens`` for any prompt."""

    options: CountingOptions

    def count_tokens(self, request: ChatRequest) -> int | None:
        if self.options.broken:
            raise RuntimeError("tokenizer exploded")
        return self.options.tokens


class _Plugin:
    @hookimpl
    def moe_register_experts(self, register: Register) -> None:
        register("counting", CountingExpert, options=CountingOptions)


def gateway(local: dict, remote_window: int = 8192):
    card = {"provider": "local", "context_window": 2048, "quality": 0.9}
    card |= {"cost_per_1k_input": 0.001, "cost_per_1k_output": 0.001}
    return make_moe(
        {
            "experts": {
                "local": {"kind": "counting", "card": card, **local},
                "remote": {
                    "kind": "echo",
                    "card": {
                        "provider": "api",
                        "context_window": remote_window,
                        "quality": 0.8,
                        "cost_per_1k_input": 0.01,
                        "cost_per_1k_output": 0.01,
                    },
                },
            },
            "gate": {"kind": "multi-factor"},
        },
        plugins=[("counting", _Plugin())],
    )


async def test_a_prompt_too_long_in_the_experts_own_tokens_is_filtered_by_context_window():
    # Five characters: by estimate a handful of tokens, but this expert's tokenizer says 3,000.
    moe = gateway({"tokens": 3000})
    decision = await moe.route(ask("hello"))
    assert decision.experts == ["remote"]
    assert filtered(decision)["local"] == "context window"
    [request] = evidence(decision, "request")
    assert request["counted_input_tokens"] == {"local": 3000}
    assert request["input_tokens"] < 20  # the estimate, which the remote expert is judged by


async def test_the_cost_prediction_uses_the_chosen_experts_own_count():
    moe = gateway({"tokens": 1000})
    decision = await moe.route(ask("hello"))
    assert decision.experts == ["local"]  # better and cheaper, and 1,000 tokens fit its window
    [cost] = evidence(decision, "cost")
    assert cost["input_tokens"] == 1000
    assert cost["input_tokens_from"] == "local's tokenizer"
    # $0.001 per 1k input tokens: the prompt alone costs $0.001.
    assert cost["min_usd"] >= 0.001


async def test_without_a_count_the_estimate_is_used_and_a_failing_tokenizer_is_not_an_error():
    for local in ({"tokens": None}, {"tokens": 3000, "broken": True}):
        decision = await gateway(local).route(ask("hello"))
        assert decision.experts == ["local"]
        [cost] = evidence(decision, "cost")
        assert cost["input_tokens"] < 20
        assert "chars" in cost["input_tokens_from"]
