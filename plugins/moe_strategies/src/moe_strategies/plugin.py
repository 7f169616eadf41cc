"""The ``strategies`` plugin's hooks: combiners over several experts, and the scorers they use."""

from __future__ import annotations

from moe_core import Register, hookimpl
from moe_core.parts import ParallelOptions
from moe_strategies.cascade import CascadeCombiner, CascadeOptions
from moe_strategies.chain import ChainCombiner, ChainOptions
from moe_strategies.mixture import MixtureOfAgentsCombiner, MixtureOptions
from moe_strategies.parallel import ConcatCombiner, FirstSuccessCombiner, FirstSuccessOptions
from moe_strategies.scorers import AnswerCheckScorer, JudgeScorer, JudgeScorerOptions


@hookimpl
def moe_register_combiners(register: Register) -> None:
    register("first-success", FirstSuccessCombiner, options=FirstSuccessOptions)
    register("concat", ConcatCombiner, options=ParallelOptions)
    register("chain", ChainCombiner, options=ChainOptions)
    register("cascade", CascadeCombiner, options=CascadeOptions)
    register("mixture-of-agents", MixtureOfAgentsCombiner, options=MixtureOptions)


@hookimpl
def moe_register_scorers(register: Register) -> None:
    register("answer-check", AnswerCheckScorer)
    register("judge", JudgeScorer, options=JudgeScorerOptions)
