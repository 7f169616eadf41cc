"""The built-in plugin: registered by :func:`moe_core.plugins.create_plugin_manager` itself."""

from __future__ import annotations

from moe_core.builtins.admin import AdminFrontend
from moe_core.builtins.cascade import CascadeCombiner, CascadeOptions
from moe_core.builtins.chain import ChainCombiner, ChainOptions
from moe_core.builtins.consensus import (
    JudgeCombiner,
    JudgeOptions,
    QualityWeightedCombiner,
    VoteCombiner,
    VoteOptions,
)
from moe_core.builtins.fixed import FixedGate, FixedGateOptions
from moe_core.builtins.memory import MemoryTracker, MemoryTrackerOptions
from moe_core.builtins.mixture import MixtureOfAgentsCombiner, MixtureOptions
from moe_core.builtins.multi_factor import MultiFactorGate, MultiFactorOptions
from moe_core.builtins.parallel import ConcatCombiner, FirstSuccessCombiner, ParallelOptions
from moe_core.builtins.scorers import AnswerCheckScorer, JudgeScorer, JudgeScorerOptions
from moe_core.builtins.single import SingleCombiner, SingleCombinerOptions
from moe_core.plugins import Register, hookimpl
from moe_core.tracking.breaker import BreakerOptions, CircuitBreakerTracker
from moe_core.tracking.experiments import ABTestOptions, ABTestTracker
from moe_core.tracking.feedback import FeedbackOptions, FeedbackTracker
from moe_core.tracking.performance import PerformanceOptions, PerformanceTracker
from moe_core.tracking.ratelimit import RateLimitOptions, RateLimitTracker
from moe_core.tracking.routes import TrackingFrontend


@hookimpl
def moe_register_gates(register: Register) -> None:
    register("fixed", FixedGate, options=FixedGateOptions)
    register("multi-factor", MultiFactorGate, options=MultiFactorOptions)


@hookimpl
def moe_register_combiners(register: Register) -> None:
    register("single", SingleCombiner, options=SingleCombinerOptions)
    register("first-success", FirstSuccessCombiner, options=ParallelOptions)
    register("concat", ConcatCombiner, options=ParallelOptions)
    register("chain", ChainCombiner, options=ChainOptions)
    register("cascade", CascadeCombiner, options=CascadeOptions)
    register("parallel-vote", VoteCombiner, options=VoteOptions)
    register("quality-weighted", QualityWeightedCombiner, options=VoteOptions)
    register("judge", JudgeCombiner, options=JudgeOptions)
    register("mixture-of-agents", MixtureOfAgentsCombiner, options=MixtureOptions)


@hookimpl
def moe_register_trackers(register: Register) -> None:
    register("memory", MemoryTracker, options=MemoryTrackerOptions)
    register("performance", PerformanceTracker, options=PerformanceOptions)
    register("circuit-breaker", CircuitBreakerTracker, options=BreakerOptions)
    register("feedback", FeedbackTracker, options=FeedbackOptions)
    register("ab-tests", ABTestTracker, options=ABTestOptions)
    register("rate-limit", RateLimitTracker, options=RateLimitOptions)


@hookimpl
def moe_register_scorers(register: Register) -> None:
    register("answer-check", AnswerCheckScorer)
    register("judge", JudgeScorer, options=JudgeScorerOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("admin", AdminFrontend)
    register("tracking", TrackingFrontend)
