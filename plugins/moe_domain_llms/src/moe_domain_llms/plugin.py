"""Hook implementations only; nothing heavy is imported here."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from moe_core import Register, hookimpl
from moe_domain_llms.answer_quality import AnswerQualityOptions, AnswerQualityScorer
from moe_domain_llms.embedder import SentenceEmbeddingExpert, SentenceEmbeddingOptions
from moe_domain_llms.expert import HFCausalLMExpert, HFCausalLMOptions
from moe_domain_llms.gates import (
    EmbeddingGate,
    EmbeddingGateOptions,
    LearnedGateOptions,
    TfidfNBGate,
)
from moe_domain_llms.predict import PredictFrontend, PredictOptions
from moe_domain_llms.quality_gate import QualityCostGate, QualityGateOptions
from moe_domain_llms.quality_scorer import QualityPriorOptions, QualityPriorScorer


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("hf-causal-lm", HFCausalLMExpert, options=HFCausalLMOptions)
    register("sentence-embedding", SentenceEmbeddingExpert, options=SentenceEmbeddingOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("predict", PredictFrontend, options=PredictOptions)


@hookimpl
def moe_register_gates(register: Register) -> None:
    register("tfidf-nb", TfidfNBGate, options=LearnedGateOptions)
    register("embedding", EmbeddingGate, options=EmbeddingGateOptions)
    register("quality-cost", QualityCostGate, options=QualityGateOptions)


@hookimpl
def moe_register_scorers(register: Register) -> None:
    register("quality-prior", QualityPriorScorer, options=QualityPriorOptions)
    register("answer-quality", AnswerQualityScorer, options=AnswerQualityOptions)


@hookimpl
def moe_default_config() -> dict[str, Any]:
    """Four domain experts on one small local model, and the learned gate between them."""
    return yaml.safe_load(resources.files(__package__).joinpath("default.yaml").read_text("utf-8"))
