"""Cost prediction before a call: how many tokens a request will take and what it may cost.

A prompt is counted with the expert's own tokenizer where it has one
(:meth:`moe_core.Expert.count_tokens`, e.g. a local transformers model), and estimated otherwise
(a remote API, whose tokenizer the gateway does not have). The estimate is the usual four
characters of English text per token (the figure OpenAI and Anthropic publish for their BPE
tokenizers), plus a few tokens of chat framing per message and a flat allowance per image. A
caller who knows better says so with ``moe.metadata.context_tokens`` (the seed's
``context_size``): the prompt is then at least that long.

The answer's length is what the caller allows (``max_tokens``) when it is below the usual length
for the task type, else that usual length; its minimum is a quarter of that and its maximum what
the call may really produce, which is also what :meth:`moe_core.run.Run._check_budget` charges
before a call (the caller's limit, else the card's, else 1,024 tokens). Actual cost, once an
expert has answered, comes from the usage it reports (``Run.cost_usd``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from moe_core.models import ChatRequest
from moe_core.run import CHARS_PER_TOKEN
from moe_core.run import DEFAULT_OUTPUT_TOKENS as DEFAULT_RUN_OUTPUT_TOKENS

MESSAGE_OVERHEAD_TOKENS = 4
"""Role and separators each chat message adds around its text."""
IMAGE_TOKENS = 765
"""One image at OpenAI's default detail (a 512 px tile grid of a typical screenshot)."""
STATED_SOURCE = "moe.metadata.context_tokens"
"""A :class:`TokenEstimate`'s source when the caller stated the prompt's length."""

EXPECTED_OUTPUT_TOKENS: dict[str, int] = {
    "code_generation": 400,
    "code_review": 600,
    "debugging": 500,
    "refactoring": 600,
    "testing": 600,
    "documentation": 600,
    "reasoning": 600,
    "planning": 700,
    "security_audit": 1200,
    "long_context": 1000,
    "multimodal": 500,
    "summarization": 300,
    "general": 300,
}
DEFAULT_OUTPUT_TOKENS = 300


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """How long a request's prompt is and how long its answer is likely to be."""

    input_tokens: int
    output_expected: int
    output_min: int
    output_limit: int | None
    """The caller's ``max_tokens`` (or ``max_completion_tokens``), if any."""
    prompt_chars: int
    """Characters of text in the prompt, which is what the budget check before a call charges."""
    source: str

    @property
    def charged_prompt_tokens(self) -> float:
        """The prompt as a budget limit must count it: the larger of this estimate and what
        the budget check before a call charges (four characters a token)."""
        return max(self.input_tokens, self.prompt_chars / CHARS_PER_TOKEN)

    def counted(self, tokens: int, source: str) -> TokenEstimate:
        """This estimate with the prompt length a tokenizer counted. A length the caller stated
        (``moe.metadata.context_tokens``) still wins when it is longer: it knows of context the
        request does not carry."""
        if self.source == STATED_SOURCE and self.input_tokens >= tokens:
            return self
        return replace(self, input_tokens=tokens, source=source)

    def output_for(self, card_max_output: int | None) -> int:
        """The expected answer length for an expert that can write at most ``card_max_output``."""
        if card_max_output is not None and card_max_output < self.output_expected:
            return card_max_output
        return self.output_expected

    def output_max(self, card_max_output: int | None, cap: int | None = None) -> int:
        """The longest answer a call may produce: the caller's limit, a gate's cap, the card's."""
        return self.output_limit or cap or card_max_output or DEFAULT_RUN_OUTPUT_TOKENS


def estimate_tokens(
    request: ChatRequest,
    task_type: str | None,
    *,
    chars_per_token: float = CHARS_PER_TOKEN,
    expected_output: dict[str, int] | None = None,
) -> TokenEstimate:
    """Estimate a request's prompt and answer length in tokens."""
    chars = 0
    images = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        elif content is not None:
            # Counted as the budget check before a call counts it: text parts joined.
            chars += len(message.text())
            images += sum(1 for part in content if part.type == "image_url")
    input_tokens = (
        math.ceil(chars / chars_per_token)
        + MESSAGE_OVERHEAD_TOKENS * len(request.messages)
        + IMAGE_TOKENS * images
    )
    source = f"{chars} chars / {chars_per_token:g} per token"
    stated = request.hints.metadata.get(
        "context_tokens", request.hints.metadata.get("context_size")
    )
    if isinstance(stated, int | float) and not isinstance(stated, bool) and stated > input_tokens:
        input_tokens, source = int(stated), STATED_SOURCE
    table = EXPECTED_OUTPUT_TOKENS if expected_output is None else expected_output
    usual = table.get(task_type or "general", table.get("general", DEFAULT_OUTPUT_TOKENS))
    limit = request.output_limit
    expected = min(usual, limit) if limit else usual
    return TokenEstimate(
        input_tokens=input_tokens,
        output_expected=expected,
        output_min=max(1, expected // 4),
        output_limit=limit,
        prompt_chars=chars,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class CostPrediction:
    """What one expert would cost for one request, in US dollars."""

    input_tokens: int
    output_tokens_min: int
    output_tokens_expected: int
    output_tokens_max: int
    min_usd: float
    expected_usd: float
    max_usd: float
    within_budget: bool | None
    """Whether the expected cost fits ``moe.budget_usd`` (None: no budget given)."""
    input_source: str = ""
    """How the prompt was measured: the expert's tokenizer, or characters per token."""

    def evidence(self, expert: str) -> dict[str, Any]:
        return {
            "kind": "cost",
            "expert": expert,
            "input_tokens": self.input_tokens,
            "input_tokens_from": self.input_source,
            "output_tokens": {
                "min": self.output_tokens_min,
                "expected": self.output_tokens_expected,
                "max": self.output_tokens_max,
            },
            "min_usd": round(self.min_usd, 8),
            "expected_usd": round(self.expected_usd, 8),
            "max_usd": round(self.max_usd, 8),
            "within_budget": self.within_budget,
        }


def predict_cost(
    cost_per_1k_input: float,
    cost_per_1k_output: float,
    max_output_tokens: int | None,
    estimate: TokenEstimate,
    budget_usd: float | None,
    *,
    output_cap: int | None = None,
) -> CostPrediction:
    """Min, expected and max cost of one call; ``output_cap`` is a gate's ``max_tokens``."""
    per_in, per_out = cost_per_1k_input / 1000, cost_per_1k_output / 1000
    prompt = estimate.input_tokens * per_in
    expected_out = estimate.output_for(max_output_tokens)
    if output_cap is not None:
        expected_out = min(expected_out, output_cap)
    minimum_out = min(estimate.output_min, expected_out)
    maximum_out = estimate.output_max(max_output_tokens, output_cap)
    expected = prompt + expected_out * per_out
    return CostPrediction(
        input_tokens=estimate.input_tokens,
        output_tokens_min=minimum_out,
        output_tokens_expected=expected_out,
        output_tokens_max=maximum_out,
        min_usd=prompt + minimum_out * per_out,
        expected_usd=expected,
        max_usd=prompt + maximum_out * per_out,
        within_budget=None if budget_usd is None else expected <= budget_usd,
        input_source=estimate.source,
    )


def budget_output_cap(
    cost_per_1k_input: float,
    cost_per_1k_output: float,
    estimate: TokenEstimate,
    budget_usd: float,
) -> int:
    """The largest ``max_tokens`` whose worst case passes the budget check before a call.

    That check charges the prompt at four characters a token, whatever the tokenizer; the cap
    charges the larger of that and the estimate, so the predicted maximum fits too. 0 means not
    even the prompt fits.
    """
    prompt = estimate.charged_prompt_tokens * cost_per_1k_input / 1000
    if cost_per_1k_output == 0:
        return estimate.output_limit or DEFAULT_RUN_OUTPUT_TOKENS if prompt <= budget_usd else 0
    room = budget_usd - prompt
    # A hair below the exact quotient, so float rounding never tips the check over the budget.
    return max(0, math.floor(room / (cost_per_1k_output / 1000) * (1 - 1e-9)))
