"""Decisions read as model selections, task types and cost predictions, under the names users
of the older router library know.

``TaskType``, ``CostPredictor`` and the decisions :meth:`MoERouter.select_model` returns
(``selected_model``, ``estimated_cost``, ``fallback_models``, ``parallel_models``,
``metadata["judge_model"]``) translate to the gateway's parts (the gate's decision and
:mod:`moe_router.cost`): nothing here decides anything of its own. Feedback, A/B tests and
per-model figures are in :mod:`moe_router.learning`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import PrivateAttr

from moe_core.models import ChatRequest, ExpertCard, RoutingDecision
from moe_core.orchestrator import MoE
from moe_router.cost import CHARS_PER_TOKEN, TokenEstimate, estimate_tokens, predict_cost


class TaskType(StrEnum):
    """Task types, valued as the strings the gate, its options and the cost estimate use."""

    REASONING = "reasoning"
    CODE_GENERATION = "code_generation"
    CODE_REVIEW = "code_review"
    PLANNING = "planning"
    ANALYSIS = "analysis"
    DOCUMENTATION = "documentation"
    TESTING = "testing"
    REFACTORING = "refactoring"
    DEBUGGING = "debugging"
    SECURITY_AUDIT = "security_audit"
    TOOL_USE = "tool_use"
    MULTIMODAL = "multimodal"
    LONG_CONTEXT = "long_context"
    SUMMARIZATION = "summarization"
    GENERAL = "general"


class ToChatRequest(Protocol):
    """A request that knows its canonical form (:class:`~moe_router.router.RoutingRequest`)."""

    def to_chat_request(self) -> ChatRequest: ...


RequestLike = ToChatRequest | ChatRequest | Mapping[str, Any]


def chat_request(request: RequestLike) -> ChatRequest:
    """The canonical request for any of the forms the router accepts."""
    if isinstance(request, ChatRequest):
        return request
    if isinstance(request, Mapping):
        return MoE.parse(request)  # a 400-style error naming the field when invalid
    return request.to_chat_request()


# -- models and decisions -------------------------------------------------------------------


class ModelCard(ExpertCard):
    """An expert's card with the expert's name as ``id``, as a registry lists a model."""

    id: str

    @property
    def quality_score(self) -> float | None:
        return self.quality


class ModelDecision(RoutingDecision):
    """The gate's :class:`~moe_core.models.RoutingDecision`, readable as a model selection.

    It is the decision itself (every field, ``evidence`` included); the properties only read
    it under other names. The estimated cost is the gate's own prediction when its evidence has
    one (the ``multi-factor`` gate records it, including the judge of a parallel set), else what
    :mod:`moe_router.cost` predicts for the chosen experts' cards.
    """

    _estimated_cost: float | None = PrivateAttr(None)
    _estimated_quality: float | None = PrivateAttr(None)

    @classmethod
    def of(
        cls,
        decision: RoutingDecision,
        *,
        estimated_cost: float | None = None,
        estimated_quality: float | None = None,
    ) -> ModelDecision:
        made = cls.model_validate(decision.model_dump())
        made._estimated_cost = estimated_cost
        made._estimated_quality = estimated_quality
        return made

    @property
    def selected_model(self) -> str:
        return self.experts[0]

    @property
    def fallback_models(self) -> list[str]:
        return list(self.fallbacks)

    @property
    def parallel_models(self) -> list[str] | None:
        """Every expert asked at once, or ``None`` when one expert answers."""
        return list(self.experts) if len(self.experts) > 1 else None

    @property
    def routing_strategy(self) -> str:
        return "parallel" if len(self.experts) > 1 else "standard"

    @property
    def estimated_cost(self) -> float | None:
        """Expected US dollars for the whole decision (``None`` only for a hand-made one)."""
        recorded = gate_estimated_cost(self)
        return recorded if recorded is not None else self._estimated_cost

    @property
    def estimated_quality(self) -> float | None:
        """The best card quality among the chosen experts, if their cards state one."""
        return self._estimated_quality

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "judge_model": self.judge,
            "strategy": self.strategy,
            "gate": self.gate,
            "runner_up": self.runner_up,
            "overrides": dict(self.overrides),
        }


def gate_estimated_cost(decision: RoutingDecision) -> float | None:
    """The expected cost a gate recorded in its evidence: a parallel set's total (answers and
    verdict), else the cost prediction of the first expert."""
    items = [item for item in decision.evidence if isinstance(item, Mapping)]
    for item in items:
        if item.get("kind") == "parallel" and item.get("applied"):
            return float(item["estimated_cost_usd"])
    for item in items:
        if item.get("kind") == "cost" and item.get("expert") == decision.experts[0]:
            return float(item["expected_usd"])
    return None


def predicted_cost(
    decision: RoutingDecision, request: ChatRequest, cards: Mapping[str, ExpertCard]
) -> float:
    """What :mod:`moe_router.cost` expects the decision's experts to cost for ``request``, for
    gates that record no prediction of their own."""
    estimate = estimate_tokens(request, request.hints.task_type)
    cap = decision.overrides.get("max_tokens")
    total = 0.0
    for name in decision.experts:
        card = cards[name]
        total += predict_cost(
            card.cost_per_1k_input,
            card.cost_per_1k_output,
            card.max_output_tokens,
            estimate,
            request.hints.budget_usd,
            output_cap=cap if isinstance(cap, int) else None,
        ).expected_usd
    return total


def best_quality(decision: RoutingDecision, cards: Mapping[str, ExpertCard]) -> float | None:
    qualities = [q for name in decision.experts if (q := cards[name].quality) is not None]
    return max(qualities) if qualities else None


# -- cost prediction ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What one model would cost for one request, in US dollars."""

    model_id: str | None
    estimated_input_tokens: int
    estimated_output_tokens: int
    min_cost: float
    expected_cost: float
    max_cost: float
    """With the longest answer the call may produce (the caller's limit, else the card's)."""
    within_budget: bool
    """Whether the expected cost fits the request's budget (True when it sets none)."""
    budget_usd: float | None
    input_tokens_from: str


class CostPredictor:
    """Token and cost estimates before a call, as the ``multi-factor`` gate makes them."""

    def __init__(
        self,
        *,
        chars_per_token: float = CHARS_PER_TOKEN,
        expected_output_tokens: Mapping[str, int] | None = None,
    ) -> None:
        """
        :param chars_per_token: characters of text per prompt token.
        :param expected_output_tokens: usual answer length per task type (default: the gate's).
        """
        self.chars_per_token = chars_per_token
        self.expected_output_tokens = (
            None if expected_output_tokens is None else dict(expected_output_tokens)
        )

    def estimate(self, request: RequestLike) -> TokenEstimate:
        chat = chat_request(request)
        return estimate_tokens(
            chat,
            chat.hints.task_type,
            chars_per_token=self.chars_per_token,
            expected_output=self.expected_output_tokens,
        )

    def estimate_tokens_from_description(
        self, description: str, task_type: TaskType | str | None = None
    ) -> tuple[int, int]:
        """Prompt tokens of ``description`` sent as the user message, and the usual answer
        length for ``task_type``."""
        hints = {"task_type": str(task_type)} if task_type is not None else {}
        estimate = self.estimate(
            {"messages": [{"role": "user", "content": description}], "moe": hints}
        )
        return estimate.input_tokens, estimate.output_expected

    def predict_cost(self, model: ExpertCard, request: RequestLike) -> CostEstimate:
        """Min, expected and max cost of asking ``model`` (a card, e.g. from
        :meth:`MoERouter.get_model`) to answer ``request``."""
        chat = chat_request(request)
        budget = chat.hints.budget_usd
        prediction = predict_cost(
            model.cost_per_1k_input,
            model.cost_per_1k_output,
            model.max_output_tokens,
            self.estimate(chat),
            budget,
        )
        return CostEstimate(
            model_id=getattr(model, "id", None),
            estimated_input_tokens=prediction.input_tokens,
            estimated_output_tokens=prediction.output_tokens_expected,
            min_cost=prediction.min_usd,
            expected_cost=prediction.expected_usd,
            max_cost=prediction.max_usd,
            within_budget=prediction.within_budget is not False,
            budget_usd=budget,
            input_tokens_from=prediction.input_source,
        )


def model_card(name: str, card: ExpertCard) -> ModelCard:
    """Expert ``name``'s card with the name as ``id``."""
    return ModelCard.model_validate({**card.model_dump(), "id": name})
