"""The ``multi-factor`` gate: filter, score, select, validate, and say why at every step.

1. **Filter** (``FILTERS``, a list of named filters; the first that fails an expert removes it):
   an expert is removed when it is disabled, its provider's circuit is open, it lacks an ability
   the request needs, the prompt and answer do not fit its context window, its quality
   is below the request's floor, its p95 latency is above the ceiling, or its expected cost is
   above the budget. When none is left, the error names which filter removed which expert.
2. **Score** (points out of 100 with the default weights): quality, cost efficiency (cheapest
   candidate full points, the dearest none, on a log scale), performance history, learned weight,
   task preference, vendor preference; provider diversity counts when fallbacks and parallel
   sets are picked. A request whose quality requirement is at least ``high_quality_threshold``
   ranks for quality: cost counts only ``high_quality_cost_factor`` of its weight.
3. **Select**: the best expert and, from other providers first, the next best as fallbacks; or,
   when the seed's triggers fire, three provider-diverse experts plus a judge.
4. **Validate**: the cost prediction of what was chosen, and when a budget is set and the caller
   gave no ``max_tokens``, a ``max_tokens`` that keeps even the longest answer within it.

A running A/B test (an :class:`~moe_core.signals.ExperimentSignal` tracker) overrides the pick
when its expert passed the filters, and the decision says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from moe_core.errors import NoEligibleExpert
from moe_core.models import ChatRequest, ExpertCard, RoutingDecision
from moe_core.parts import Expert, Gate, Tracker
from moe_core.signals import (
    BreakerSignal,
    ExperimentSignal,
    PerformanceSignal,
    PerformanceView,
    WeightSignal,
    find_signals,
)
from moe_router import multi_factor_explain as explain
from moe_router.cost import TokenEstimate, budget_output_cap, predict_cost
from moe_router.multi_factor_explain import Removed
from moe_router.multi_factor_options import MultiFactorOptions, Weights
from moe_router.multi_factor_parallel import parallel_decision, parallel_triggers
from moe_router.multi_factor_profile import Candidate, Profile, profile_of
from moe_router.multi_factor_request import Requirements, read_requirements

if TYPE_CHECKING:
    from moe_core.orchestrator import MoE

log = structlog.get_logger(__name__)

__all__ = ["MultiFactorGate", "MultiFactorOptions", "Weights"]

TRUSTED_HISTORY = 0.5
"""Confidence from which observed p95 latency replaces the card's."""
_CHEAPEST_USD = 1e-7
"""Free models are priced at this for the log scale of cost efficiency."""
NEUTRAL_SCORE = 0.5
"""What history or feedback say with nothing to go on, on the 0..1 scale the gate scores."""


def history_score(view: PerformanceView) -> float:
    """History's say on an expert, 0..1: its success rate, trusted as far as its confidence."""
    return view.confidence * view.success_rate + (1 - view.confidence) * NEUTRAL_SCORE


def learned_score(weight: float) -> float:
    """A learned weight (0..2, 1.0 neutral) on the gate's 0..1 scale."""
    return 0.0 if weight < 0 else 1.0 if weight > 2 else weight / 2


@dataclass(slots=True)
class _Signals:
    breakers: list[BreakerSignal]
    performance: list[PerformanceSignal]
    weights: list[WeightSignal]
    experiments: list[ExperimentSignal]


# -- the filters -----------------------------------------------------------------------------
#
# ``_filter`` walks every expert through ``FILTERS`` (below) in order; the first filter that
# fails it removes it. Each filter has a name (as ``explain.FILTERS`` spells it: the evidence's
# ``filter`` and the error's headings) and a check that takes the expert's profile and the
# decision's ``_FilterContext`` and returns ``None`` when the expert passes, else the value that
# failed it, which the evidence and the error record against the expert (its window, quality,
# p95 latency or cost; the abilities it lacks; the provider or expert whose circuit is open).
# An expert that passes the first three, ``CALLABLE_FILTERS``, can at least be called: it may
# judge a parallel set even when ``FIT_FILTERS`` remove it as a candidate.


@dataclass(frozen=True, slots=True)
class _FilterContext:
    """What the filters read for one decision."""

    needs: Requirements
    found: _Signals
    open_providers: dict[str, bool]
    """Whether each provider's circuit is open, asked once per provider and decision."""


def _expected_usd(p: Profile, needs: Requirements) -> float:
    prompt = needs.estimate_for(p.name).input_tokens
    return prompt * p.per_in + needs.estimate.output_for(p.max_output) * p.per_out


def _latency(p: Profile, task: str, found: _Signals) -> float | None:
    """The p95 latency history shows when it is trusted enough, else the card's."""
    for tracker in found.performance:
        view = tracker.performance(p.name, task)
        if view is not None:
            if view.latency_p95_ms is not None and view.confidence >= TRUSTED_HISTORY:
                return view.latency_p95_ms
            break
    return p.latency_ms


def _disabled(p: Profile, context: _FilterContext) -> Any:
    """``False`` (the card's ``enabled``) when the card disables the expert."""
    return None if p.enabled else False


def _circuit_open(p: Profile, context: _FilterContext) -> Any:
    """The provider whose circuit is open, else the expert if its own circuit is."""
    breakers = context.found.breakers
    if not breakers:
        return None
    provider_open = context.open_providers.get(p.provider)
    if provider_open is None:
        provider_open = _any_open(breakers, p.provider)
        context.open_providers[p.provider] = provider_open
    if provider_open:
        return p.provider
    if _any_open(breakers, p.name):
        return p.name
    return None


def _any_open(breakers: list[BreakerSignal], target: str) -> bool:
    # A loop, not any() over a generator: this runs for every expert, and the generator made
    # the whole gate about 10% slower in bench/multi_factor.py.
    for breaker in breakers:  # noqa: SIM110
        if breaker.circuit_open(target):
            return True
    return False


def _window_too_small(p: Profile, context: _FilterContext) -> Any:
    needs = context.needs
    if p.window is None:
        return None
    prompt = needs.estimate_for(p.name).input_tokens
    if prompt + needs.estimate.output_for(p.max_output) > p.window:
        return p.window
    return None


def _lacks_abilities(p: Profile, context: _FilterContext) -> Any:
    abilities = context.needs.abilities
    if abilities and not abilities <= p.abilities:
        return sorted(abilities - p.abilities)
    return None


def _quality_too_low(p: Profile, context: _FilterContext) -> Any:
    floor = context.needs.quality_floor
    if floor is not None and p.quality < floor:
        return p.quality
    return None


def _too_slow(p: Profile, context: _FilterContext) -> Any:
    needs = context.needs
    if needs.latency_ceiling_ms is None:
        return None
    latency = _latency(p, needs.task_type, context.found)
    if latency is not None and latency > needs.latency_ceiling_ms:
        return latency
    return None


def _over_budget(p: Profile, context: _FilterContext) -> Any:
    needs = context.needs
    if needs.budget_usd is None:
        return None
    # With the caller's max_tokens the longest answer must fit (the gateway checks that before
    # each call); without, the gate caps it, so the expected cost must.
    limit = needs.estimate.output_limit
    if limit is None:
        cost = _expected_usd(p, needs)
    else:
        cost = needs.estimate_for(p.name).charged_prompt_tokens * p.per_in + limit * p.per_out
    if cost > needs.budget_usd:
        return round(cost, 8)
    return None


@dataclass(frozen=True, slots=True)
class _Filter:
    name: str
    """As ``explain.FILTERS`` spells it."""
    check: Callable[[Profile, _FilterContext], Any]
    """``None`` when the expert passes, else the value that failed it."""


CALLABLE_FILTERS = (
    _Filter("disabled", _disabled),
    _Filter("circuit open", _circuit_open),
    _Filter("context window", _window_too_small),
)
FIT_FILTERS = (
    _Filter("capabilities", _lacks_abilities),
    _Filter("quality floor", _quality_too_low),
    _Filter("latency ceiling", _too_slow),
    _Filter("budget", _over_budget),
)
FILTERS = CALLABLE_FILTERS + FIT_FILTERS
assert tuple(f.name for f in FILTERS) == explain.FILTERS, "keep explain.FILTERS in step"


def _first_failed(p: Profile, context: _FilterContext) -> tuple[str, Any] | None:
    """The first filter that removes ``p`` and the value that failed it, if any."""
    for f in FILTERS:
        value = f.check(p, context)
        if value is not None:
            return f.name, value
    return None


class MultiFactorGate(Gate):
    """Picks experts by abilities, limits, quality, cost and history, with an evidence trail."""

    options: MultiFactorOptions
    runs_experiments = True  # an assigned arm must also pass the filters (see _experiment)

    def __init__(self, name: str, options: MultiFactorOptions) -> None:
        super().__init__(name, options)
        self._profiles: dict[str, Profile] = {}
        self._last_profiles: list[Profile] = []
        self._signals_of: Mapping[str, Tracker] | None = None
        self._signals = _Signals([], [], [], [])
        self._parallel_strategies = frozenset(options.parallel_strategies)
        self._counters: dict[str, Callable[[ChatRequest], int | None]] = {}

    def attach(self, moe: MoE) -> None:
        # The experts that can count a prompt in their own tokens (local models): their counts
        # replace the estimate in context-window checks and cost predictions.
        self._counters = {
            name: slot.expert.count_tokens
            for name, slot in moe.experts.items()
            if type(slot.expert).count_tokens is not Expert.count_tokens
        }

    def _count_tokens(
        self, request: ChatRequest, experts: Mapping[str, ExpertCard], needs: Requirements
    ) -> dict[str, TokenEstimate]:
        counted: dict[str, TokenEstimate] = {}
        for name, count in self._counters.items():
            if name not in experts:
                continue
            try:
                tokens = count(request)
            except Exception as exc:  # a tokenizer that fails costs precision, not the request
                log.warning("gate.count_tokens_failed", expert=name, error=str(exc))
                continue
            if tokens is not None:
                counted[name] = needs.estimate.counted(tokens, f"{name}'s tokenizer")
        return counted

    # -- per-card and per-tracker work done once ------------------------------------------

    def _profile(self, name: str, card: ExpertCard) -> Profile:
        profile = self._profiles.get(name)
        if profile is None or profile.card is not card:
            profile = profile_of(name, card, self.options.quality_baseline)
            self._profiles[name] = profile
        return profile

    def _profiles_for(self, experts: Mapping[str, ExpertCard]) -> list[Profile]:
        """The profiles of ``experts``, reused while the cards are the same objects."""
        cached = self._last_profiles
        if len(cached) == len(experts):
            for profile, (name, card) in zip(cached, experts.items(), strict=True):
                if profile.card is not card or profile.name != name:
                    break
            else:
                return cached
        self._last_profiles = [self._profile(name, card) for name, card in experts.items()]
        return self._last_profiles

    def _signals_from(self, signals: Mapping[str, Tracker]) -> _Signals:
        if signals is not self._signals_of:
            self._signals = _Signals(
                list(find_signals(signals, BreakerSignal)),
                list(find_signals(signals, PerformanceSignal)),
                list(find_signals(signals, WeightSignal)),
                list(find_signals(signals, ExperimentSignal)),
            )
            self._signals_of = signals
        return self._signals

    # -- the decision -----------------------------------------------------------------------

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        options = self.options
        needs = read_requirements(
            request,
            task_abilities=options.task_capabilities,
            parallel_strategies=self._parallel_strategies,
            default_quality=options.default_quality_requirement,
            chars_per_token=options.chars_per_token,
            expected_output=options.expected_output_tokens,
        )
        if self._counters:
            counted = self._count_tokens(request, experts, needs)
            if counted:
                needs = replace(needs, counted=counted)
        found = self._signals_from(signals)
        profiles = self._profiles_for(experts)
        candidates, removed, usable = self._filter(profiles, needs, found)
        if not candidates:
            raise NoEligibleExpert(explain.nothing_left(removed, needs, len(profiles)), param="moe")
        self._score(candidates, needs, found)
        candidates.sort(key=lambda c: c.total, reverse=True)
        return self._select(candidates, removed, usable, needs, found, request)

    def _filter(
        self, profiles: list[Profile], needs: Requirements, found: _Signals
    ) -> tuple[list[Candidate], Removed, list[Profile]]:
        """Candidates that pass every filter, what each filter removed (expert to its value),
        and the experts that could at least be called (enabled, circuit closed, big enough):
        possible judges."""
        context = _FilterContext(needs, found, {})
        candidates: list[Candidate] = []
        removed: Removed = {f.name: {} for f in FILTERS}
        for p in profiles:
            failed = _first_failed(p, context)
            if failed is None:
                candidates.append(Candidate(p, _expected_usd(p, needs)))
            else:
                which, value = failed
                removed[which][p.name] = value
        # Possible judges: the experts that passed CALLABLE_FILTERS (FIT_FILTERS may not).
        uncallable = {name for f in CALLABLE_FILTERS for name in removed[f.name]}
        usable = [p for p in profiles if p.name not in uncallable]
        return candidates, {which: names for which, names in removed.items() if names}, usable

    def _score(self, candidates: list[Candidate], needs: Requirements, found: _Signals) -> None:
        weights = self.options.weights
        w_quality, w_performance, w_learned = weights.quality, weights.performance, weights.learned
        w_preference, w_vendor = weights.task_preference, weights.vendor_preference
        cost_weight = weights.cost
        floor = needs.quality_floor
        if floor is not None and floor >= self.options.high_quality_threshold:
            cost_weight *= self.options.high_quality_cost_factor
        log = math.log
        logs = [
            log(c.expected_usd if c.expected_usd > _CHEAPEST_USD else _CHEAPEST_USD)
            for c in candidates
        ]
        dearest = max(logs)
        spread = dearest - min(logs)
        cost_per_log = cost_weight / spread if spread > 1e-9 else 0.0
        task, vendors = needs.task_type, needs.vendors
        history_sources, weight_sources = found.performance, found.weights
        for candidate, log_cost in zip(candidates, logs, strict=True):
            p = candidate.profile
            cost = cost_weight if cost_per_log == 0.0 else (dearest - log_cost) * cost_per_log
            history = NEUTRAL_SCORE
            for tracker in history_sources:
                view = tracker.performance(p.name, task)
                if view is not None:
                    history = history_score(view)
                    break
            learned = 1.0
            for tracker in weight_sources:
                learned *= tracker.learned_weight(p.name, task)
            learned = learned_score(learned)
            parts = (
                w_quality * p.quality_points,
                cost,
                w_performance * history,
                w_learned * learned,
                w_preference * p.preferences.get(task, 0.0),
                w_vendor if p.provider in vendors else 0.0,
            )
            candidate.parts = parts
            candidate.total = parts[0] + parts[1] + parts[2] + parts[3] + parts[4] + parts[5]

    # -- selection and validation -----------------------------------------------------------

    def _select(
        self,
        ranked: list[Candidate],
        removed: Removed,
        usable: list[Profile],
        needs: Requirements,
        found: _Signals,
        request: ChatRequest,
    ) -> RoutingDecision:
        evidence: list[Any] = [needs.summary()]
        evidence.extend(explain.filtered_items(removed, needs))
        notes: list[str] = []
        floor = needs.quality_floor
        if floor is not None and floor >= self.options.high_quality_threshold:
            notes.append(
                f"quality requirement {floor:g} ranks for quality (cost counts "
                f"{self.options.high_quality_cost_factor:.0%} of its weight)"
            )
        experiment = self._experiment(ranked, request, needs, found, evidence, notes)
        if experiment is not None:
            ranked = [experiment, *(c for c in ranked if c is not experiment)]

        triggers = [] if experiment is not None else parallel_triggers(needs, self.options)
        if triggers and len(ranked) > 1:
            decision = parallel_decision(
                self.name,
                self.options,
                ranked,
                usable,
                needs,
                triggers,
                evidence,
                notes,
                self._diverse,
            )
            if decision is not None:
                return decision
        elif triggers:
            notes.append(f"parallel execution wanted ({triggers[0]}) but only one expert passed")

        top = ranked[0]
        budget = needs.budget_usd
        cap = None
        overrides: dict[str, Any] = {}
        estimate = needs.estimate_for(top.profile.name)
        card = top.profile.card
        if budget is not None and estimate.output_limit is None and top.profile.per_out:
            room = budget_output_cap(
                card.cost_per_1k_input, card.cost_per_1k_output, estimate, budget
            )
            if room < estimate.output_max(card.max_output_tokens):
                cap = room
                overrides["max_tokens"] = cap
                notes.append(f"max_tokens {cap} keeps the longest answer within the budget")
        fallbacks = self._diverse(ranked[1:], {top.profile.provider}, self.options.fallbacks)
        if budget is not None:
            fallbacks = [c for c in fallbacks if self._worst(c.profile, needs, cap) <= budget]
        prediction = predict_cost(
            card.cost_per_1k_input,
            card.cost_per_1k_output,
            card.max_output_tokens,
            estimate,
            budget,
            output_cap=cap,
        )
        evidence.extend(explain.score_item(c) for c in (top, *fallbacks))
        evidence.append(prediction.evidence(top.profile.name))
        runner_up = ranked[1] if len(ranked) > 1 else None
        latency = None
        if needs.latency_ceiling_ms is not None:
            latency = _latency(top.profile, needs.task_type, found)
        rationale = explain.rationale(
            top, needs, prediction.expected_usd, runner_up, removed, notes, latency
        )
        confidence = 0.5 if experiment is not None else explain.confidence(top, runner_up)
        return RoutingDecision.model_construct(
            experts=[top.profile.name],
            strategy=None,
            fallbacks=[c.profile.name for c in fallbacks],
            gate=self.name,
            confidence=confidence,
            rationale=rationale,
            runner_up=None if runner_up is None else runner_up.profile.name,
            scores={c.profile.name: c.total for c in ranked},
            evidence=evidence,
            overrides=overrides,
            judge=None,
        )

    def _worst(self, p: Profile, needs: Requirements, cap: int | None) -> float:
        """What the budget check before a call charges for this expert."""
        estimate = needs.estimate_for(p.name)
        output = estimate.output_max(p.card.max_output_tokens, cap)
        return estimate.charged_prompt_tokens * p.per_in + output * p.per_out

    def _diverse(
        self, ranked: list[Candidate], providers: set[str], count: int, *, strict: bool = False
    ) -> list[Candidate]:
        """The ``count`` best of ``ranked``, a new provider worth the diversity weight (or, with
        ``strict``, always first: a parallel set asks as many providers as it can)."""
        bonus = 1e9 if strict else self.options.weights.diversity
        chosen: list[Candidate] = []
        seen = set(providers)
        pool = list(ranked)
        if not strict and len(pool) > count:
            # While fewer than ``count`` are chosen, one of the ``count`` best is still in the
            # pool, so nothing scoring more than the bonus below the count-th best can win.
            reachable = ranked[count - 1].total - bonus
            pool = [c for c in pool if c.total >= reachable]
        while pool and len(chosen) < count:
            best = max(
                pool, key=lambda c: c.total + (bonus if c.profile.provider not in seen else 0.0)
            )
            pool.remove(best)
            chosen.append(best)
            seen.add(best.profile.provider)
        return chosen

    def _experiment(
        self,
        ranked: list[Candidate],
        request: ChatRequest,
        needs: Requirements,
        found: _Signals,
        evidence: list[Any],
        notes: list[str],
    ) -> Candidate | None:
        for tracker in found.experiments:
            assigned = tracker.assignment(request, needs.task_type)
            if assigned is None:
                continue
            item = {
                "kind": "experiment",
                "assigned": assigned,
                "top_scored": ranked[0].profile.name,
            }
            match = next((c for c in ranked if c.profile.name == assigned), None)
            item["applied"] = match is not None
            evidence.append(item)
            if match is None:
                notes.append(f"an A/B test assigned {assigned}, which did not pass the filters")
                return None
            notes.append(f"an A/B test assigned this request to {assigned}")
            return match
        return None
