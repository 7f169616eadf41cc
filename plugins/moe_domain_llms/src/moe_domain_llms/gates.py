"""Learned domain gates: a query's domain is predicted by a trained classifier, not by if/else.

- ``tfidf-nb``: TF-IDF over unigrams and bigrams (English stop words) and multinomial Naive
  Bayes, the classic baseline. Routing runs the trained model in plain numpy (a vocabulary
  lookup and one small matrix product), thousands of times faster per call than a scikit-learn
  pipeline.
- ``embedding``: all-MiniLM-L6-v2 sentence embeddings and a multinomial logistic regression with
  temperature-scaled (calibrated) probabilities. Below ``threshold`` the gate abstains to the
  ``general`` expert and says so.

Both report the label, its probability, the runner-up and a one-line rationale. Labels map to
experts by name (``healthcare`` goes to the expert called ``healthcare``) unless ``experts``
says otherwise, so a fifth domain is config plus training data.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from moe_core import ChatRequest, ConfigError, ExpertCard, Gate, Options, RoutingDecision, Tracker
from moe_domain_llms import artefacts
from moe_domain_llms.embeddings import DEFAULT_ENCODER, Encoder

DEFAULT_DATA = Path(__file__).parent / "data" / "domain_queries.csv"


class LearnedGateOptions(Options):
    artefact: str | None = Field(None, description="Trained artefact; default: the bundled one")
    experts: dict[str, str] = Field(
        default_factory=dict, description="Label to expert name; default: the same name"
    )
    abstain_to: str = Field("general", description="The label taken when confidence is low")
    threshold: float = Field(0.0, ge=0, le=1, description="Abstain below this probability")
    data: str | None = Field(None, description="Training data (CSV query,label,split)")


class EmbeddingGateOptions(LearnedGateOptions):
    threshold: float = Field(0.5, ge=0, le=1, description="Abstain below this probability")
    encoder: str = Field(DEFAULT_ENCODER, description="Sentence-embedding model folder")


class LearnedGate(Gate):
    """What both learned gates share: artefact, label-to-expert map, decision building."""

    kind: ClassVar[str]
    options: LearnedGateOptions

    def __init__(self, name: str, options: LearnedGateOptions) -> None:
        super().__init__(name, options)
        self.artefact_path = (
            Path(options.artefact) if options.artefact else artefacts.PACKAGED / f"{self.kind}.npz"
        )
        self.model: artefacts.Artefact | None = None
        if self.artefact_path.is_file():  # a missing one is fine until routing or training
            self.model = artefacts.load(self.artefact_path, self.kind, where="gate.artefact")
            self._check_labels(self.model.labels)

    @property
    def data_path(self) -> Path:
        return Path(self.options.data) if self.options.data else DEFAULT_DATA

    def _check_labels(self, labels: list[str]) -> None:
        if self.options.abstain_to not in labels:
            raise ConfigError(
                f"gate.abstain_to: {self.options.abstain_to!r} is not a label of "
                f"{self.artefact_path} (labels: {', '.join(labels)})"
            )
        self.labels = labels
        self.label_array = np.array(labels)

    def expert_for(self, label: str) -> str:
        return self.options.experts.get(label, label)

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        if self.model is None:
            raise ConfigError(
                f"gate: no trained artefact at {self.artefact_path}; train one with "
                f"`moe gate train` (gate kind {self.kind})"
            )
        missing = [
            f"{label} -> {self.expert_for(label)}"
            for label in self.labels
            if self.expert_for(label) not in experts
        ]
        if missing:
            raise ConfigError(
                f"gate: labels routed to experts that are not configured: {', '.join(missing)}; "
                "configure them or map labels with gate.experts"
            )

    def probabilities(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decide(self, probabilities: np.ndarray, how: str) -> RoutingDecision:
        order = np.argsort(-probabilities)
        best, second = self.labels[order[0]], self.labels[order[1]]
        confidence = float(probabilities[order[0]])
        scores = {
            label: round(float(p), 4) for label, p in zip(self.labels, probabilities, strict=True)
        }
        label, rationale = (
            best,
            (
                f"{how}: {best} (p={confidence:.2f}), runner-up {second} "
                f"(p={float(probabilities[order[1]]):.2f})"
            ),
        )
        abstain = self.options.abstain_to
        if confidence < self.options.threshold and best != abstain:
            label = abstain
            rationale += (
                f"; below the {self.options.threshold:.2f} threshold, so the gate abstains to "
                f"{abstain}"
            )
        expert = self.expert_for(label)
        fallback = self.expert_for(abstain)
        return RoutingDecision(
            experts=[expert],
            fallbacks=[fallback] if fallback != expert else [],
            gate=self.name,
            confidence=confidence,
            runner_up=self.expert_for(second if label == best else best),
            scores=scores,
            rationale=rationale,
            evidence=[{"label": label, "predicted": best, "abstained": label != best}],
        )


# -- TF-IDF + Naive Bayes ------------------------------------------------------------------

_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


class TfidfNBGate(LearnedGate):
    """TF-IDF (1-2 grams, English stop words) + multinomial Naive Bayes: the seed's baseline."""

    kind = "tfidf-nb"

    def __init__(self, name: str, options: LearnedGateOptions) -> None:
        super().__init__(name, options)
        if self.model is not None:
            arrays = self.model.arrays
            self.vocabulary = {term: i for i, term in enumerate(arrays["terms"].tolist())}
            self.stop_words = frozenset(arrays["stop_words"].tolist())
            self.idf = arrays["idf"]
            self.log_prob_t = np.ascontiguousarray(arrays["feature_log_prob"].T)
            self.log_prior = arrays["class_log_prior"]

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary indices and their l2-normalised tf-idf weights, as scikit-learn would."""
        tokens = [t for t in _TOKEN.findall(text.lower()) if t not in self.stop_words]
        counts: dict[int, int] = {}
        for term in (*tokens, *map(" ".join, itertools.pairwise(tokens))):
            index = self.vocabulary.get(term)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        indices = np.fromiter(counts, dtype=np.int64, count=len(counts))
        weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        weights *= self.idf[indices]
        norm = np.sqrt(weights @ weights)
        return indices, weights / norm if norm else weights

    def probabilities(self, text: str) -> np.ndarray:
        indices, weights = self.features(text)
        joint = self.log_prior + weights @ self.log_prob_t[indices]
        joint = np.exp(joint - joint.max())
        return joint / joint.sum()

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        return self.decide(self.probabilities(request.last_user_text()), "tf-idf naive Bayes")

    def train(self, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
        from moe_domain_llms.training import train_tfidf_nb

        return train_tfidf_nb(self.data_path, output or self.artefact_path, progress=progress)


# -- sentence embeddings + logistic regression ----------------------------------------------


class EmbeddingGate(LearnedGate):
    """all-MiniLM-L6-v2 embeddings + calibrated logistic regression, abstaining when unsure."""

    kind = "embedding"
    options: EmbeddingGateOptions

    def __init__(self, name: str, options: EmbeddingGateOptions) -> None:
        super().__init__(name, options)
        self.encoder = Encoder(options.encoder, where="gate.encoder")
        if self.model is not None:
            trained_with = self.model.meta.get("encoder")
            if trained_with != self.encoder.identity:
                raise ConfigError(
                    f"gate.artefact: {self.artefact_path} was trained on embeddings from "
                    f"{trained_with}, but gate.encoder is {self.encoder.identity}; retrain with "
                    "`moe gate train`"
                )
            self.weights = self.model.arrays["coef"].T.astype(np.float32)
            self.bias = self.model.arrays["intercept"].astype(np.float32)
            self.temperature = float(self.model.arrays["temperature"])

    async def start(self) -> None:
        import asyncio

        await asyncio.to_thread(self.encoder.load)

    async def close(self) -> None:
        await self.encoder.close()

    def probabilities_from(self, embeddings: np.ndarray) -> np.ndarray:
        logits = (embeddings @ self.weights + self.bias) / self.temperature
        logits = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return logits / logits.sum(axis=-1, keepdims=True)

    def probabilities(self, text: str) -> np.ndarray:
        return self.probabilities_from(self.encoder.encode([text]))[0]

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        embedding = await self.encoder.encode_one(request.last_user_text())
        return self.decide(self.probabilities_from(embedding), "sentence-embedding classifier")

    def train(self, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
        from moe_domain_llms.training import train_embedding

        return train_embedding(
            self.data_path, output or self.artefact_path, self.encoder, progress=progress
        )
