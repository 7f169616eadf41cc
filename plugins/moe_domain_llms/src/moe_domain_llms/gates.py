"""Learned domain gates: a query's domain is predicted by a trained classifier, not by if/else.

- ``tfidf-nb``: TF-IDF over unigrams and bigrams (English stop words) and multinomial Naive
  Bayes, the classic baseline. Routing runs the trained model in plain numpy (a vocabulary
  lookup and one small matrix product), thousands of times faster per call than a scikit-learn
  pipeline.
- ``embedding``: all-MiniLM-L6-v2 sentence embeddings, joined by TF-IDF term features (the
  encoder knows phrasing, the terms carry jargon it has rarely seen), and a multinomial logistic
  regression with temperature-scaled (calibrated) probabilities. Below ``threshold`` the gate
  abstains to the ``general`` expert and says so. Training first adapts the encoder to the
  labels with a small LoRA adapter (shipped in the artefact, merged into the encoder at load).
  Where that model is unsure, a second one that also reads a small language model's states
  and character n-grams decides instead (:mod:`moe_domain_llms.second_opinion`).

Both report the label, its probability, the runner-up and a one-line rationale. A request with
nothing to classify goes to the abstain label with confidence 1, and the rationale says why: no
user text (an empty message, only an image, none from the user), no word (only emoji or
punctuation), or no word the gate was trained on (keyboard mash). When the gate abstains because
the top label is below ``threshold``, the decision's confidence is the abstain label's
probability, the confidence in the expert it routes to. Labels map to experts by name
(``healthcare`` goes to the expert called ``healthcare``) unless ``experts`` says otherwise, so
a fifth domain is config plus training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from moe_core import ChatRequest, ConfigError, ExpertCard, Gate, Options, RoutingDecision, Tracker
from moe_core.artefacts import default_output, with_usage
from moe_domain_llms import artefacts
from moe_domain_llms.embeddings import DEFAULT_ENCODER, RUNTIME_HELP, Encoder, Runtime
from moe_domain_llms.lm_states import DEFAULT_LM
from moe_domain_llms.second_opinion import LM_LAYER, PREFIX, SecondOpinion
from moe_domain_llms.terms import TfidfFeatures
from moe_domain_llms.training import DEFAULT_THRESHOLD

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
    threshold: float = Field(
        DEFAULT_THRESHOLD, ge=0, le=1, description="Abstain below this probability"
    )
    encoder: str = Field(DEFAULT_ENCODER, description="Sentence-embedding model folder")
    runtime: Runtime = Field("onnx", description=RUNTIME_HELP)
    finetune_epochs: int = Field(
        2, ge=0, description="Training: epochs of LoRA fine-tuning of the encoder (0: frozen)"
    )
    reuse_adapter: str | None = Field(
        None,
        description="Training: merge the encoder adapter of this embedding artefact instead of "
        "fine-tuning (minutes instead of an hour; the validation figures are then optimistic)",
    )
    second_opinion: bool = Field(
        True,
        description="Training: also fit the second model, on the language model's states, that "
        "decides where the first is unsure",
    )
    lm: str = Field(DEFAULT_LM, description="The language model the second opinion reads")
    lm_layer: int = Field(
        LM_LAYER, ge=1, description="Training: the language-model layer whose states it reads"
    )
    consult_below: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Consult the second opinion below this first-model probability; default: "
        "the artefact's; 0: never (the language model is then not loaded)",
    )


class LearnedGate(Gate):
    """What both learned gates share: artefact, label-to-expert map, decision building."""

    kind: ClassVar[str]
    method: ClassVar[str]  # how the rationale names the classifier
    options: LearnedGateOptions
    features: TfidfFeatures  # the word terms training saw, bound from the artefact

    def __init__(self, name: str, options: LearnedGateOptions) -> None:
        super().__init__(name, options)
        self.artefact_path = (
            Path(options.artefact) if options.artefact else artefacts.PACKAGED / f"{self.kind}.npz"
        )
        self._model: artefacts.Artefact | None = None

    @property
    def model(self) -> artefacts.Artefact:
        """The trained artefact, read on first use: at startup (``check_experts``) when serving,
        never when training, which must work whatever state the old file is in."""
        if self._model is None:
            model = artefacts.load(self.artefact_path, self.kind, where="gate.artefact")
            if self.options.abstain_to not in model.labels:
                raise ConfigError(
                    f"gate.abstain_to: {self.options.abstain_to!r} is not a label of "
                    f"{self.artefact_path} (labels: {', '.join(model.labels)})"
                )
            try:
                self.bind(model)
            except KeyError as exc:
                made_by = model.meta.get("versions", {}).get("moe-domain-llms")
                raise ConfigError(
                    f"gate.artefact: {self.artefact_path} lacks the array {exc} (made by "
                    f"moe-domain-llms {made_by}); retrain it with `moe gate train`"
                ) from None
            self.labels = model.labels
            self._model = model
        return self._model

    def bind(self, model: artefacts.Artefact) -> None:
        """Take what routing needs from the artefact's arrays (a missing one is a KeyError)."""
        raise NotImplementedError

    @property
    def data_path(self) -> Path:
        return Path(self.options.data) if self.options.data else DEFAULT_DATA

    def expert_for(self, label: str) -> str:
        return self.options.experts.get(label, label)

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        missing = [
            f"{label} -> {self.expert_for(label)}"
            for label in self.model.labels
            if self.expert_for(label) not in experts
        ]
        if missing:
            raise ConfigError(
                f"gate: labels routed to experts that are not configured: {', '.join(missing)}; "
                "configure them or map labels with gate.experts"
            )

    def probabilities(self, text: str) -> np.ndarray:
        """Each label's probability for one text."""
        raise NotImplementedError

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        text = request.last_user_text()
        if not text.strip():
            return self.without_text("no user text to classify")
        if not any(character.isalnum() for character in text):
            # Emoji, punctuation, a row of symbols: no word or number that could name a domain.
            return self.without_text("no word in the user text to classify")
        if not self.knows_a_word(text):
            # Keyboard mash and words never seen in training: whatever the classifier made of
            # them would be a guess, and a confident-looking one (it must pick some label).
            return self.without_text("no word of the user text was in the training data")
        return await self.classify(text)

    def knows_a_word(self, text: str) -> bool:
        """Whether any word term of ``text`` is in the vocabulary training left behind."""
        self.model  # noqa: B018 - loads the artefact on first use
        indices, _ = self.features(text)
        return len(indices) > 0

    async def classify(self, text: str) -> RoutingDecision:
        """The decision for a request whose last user message says ``text``; a gate whose
        model batches concurrent requests overrides this."""
        return self.decide(self.probabilities(text), self.method)

    def without_text(self, why: str) -> RoutingDecision:
        """The decision for a request with nothing to classify: its last user message is empty,
        only images or only symbols, or it has none. Probabilities for no words say nothing
        about a domain, so the gate abstains, certain that no domain expert is asked for
        (confidence 1 in the abstain label), and says ``why``."""
        abstain = self.options.abstain_to
        return RoutingDecision(
            experts=[self.expert_for(abstain)],
            gate=self.name,
            confidence=1.0,
            scores={label: float(label == abstain) for label in self.model.labels},
            rationale=f"{self.method}: {why}, so the gate abstains to {abstain}",
            evidence=[{"label": abstain, "predicted": None, "abstained": True}],
        )

    def decide(self, probabilities: np.ndarray, how: str, detail: str = "") -> RoutingDecision:
        """The decision for these probabilities; ``detail`` joins the rationale after the
        runner-up (how the probabilities were reached, when that varies)."""
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
                f"(p={float(probabilities[order[1]]):.2f}){detail}"
            ),
        )
        abstain = self.options.abstain_to
        if confidence < self.options.threshold and best != abstain:
            label = abstain
            # The decision's confidence is in the label it routes to, not in the one rejected.
            confidence = float(probabilities[self.labels.index(abstain)])
            rationale += (
                f"; below the {self.options.threshold:.2f} threshold, so the gate abstains to "
                f"{abstain} (p={confidence:.2f})"
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


class TfidfNBGate(LearnedGate):
    """TF-IDF (1-2 grams, English stop words) + multinomial Naive Bayes: the seed's baseline."""

    kind = "tfidf-nb"
    method = "tf-idf naive Bayes"

    def bind(self, model: artefacts.Artefact) -> None:
        self.features = TfidfFeatures(model.arrays)
        self.log_prob_t = np.ascontiguousarray(model.arrays["feature_log_prob"].T)
        self.log_prior = model.arrays["class_log_prior"]

    def probabilities(self, text: str) -> np.ndarray:
        self.model  # noqa: B018 - loads the artefact on first use
        indices, weights = self.features(text)
        joint = self.log_prior + weights @ self.log_prob_t[indices]
        joint = np.exp(joint - joint.max())
        return joint / joint.sum()

    def train(self, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
        from moe_domain_llms.training import train_tfidf_nb

        result = train_tfidf_nb(
            self.data_path, output or default_output(self.kind), progress=progress
        )
        return with_usage(result, self.artefact_path)


# -- sentence embeddings + logistic regression ----------------------------------------------


class EmbeddingGate(LearnedGate):
    """all-MiniLM-L6-v2 embeddings + calibrated logistic regression, abstaining when unsure."""

    kind = "embedding"
    method = "sentence-embedding classifier"
    options: EmbeddingGateOptions

    def __init__(self, name: str, options: EmbeddingGateOptions) -> None:
        super().__init__(name, options)
        self.encoder = Encoder(options.encoder, where="gate.encoder", runtime=options.runtime)
        self.second: SecondOpinion | None = None
        self.consult_below = 0.0

    def bind(self, model: artefacts.Artefact) -> None:
        trained_with = model.meta.get("encoder")
        if trained_with != self.encoder.identity:
            raise ConfigError(
                f"gate.artefact: {self.artefact_path} was trained on embeddings from "
                f"{trained_with}, but gate.encoder is {self.encoder.identity}; retrain with "
                "`moe gate train`"
            )
        arrays = model.arrays
        self.weights = arrays["coef_embedding"].T.astype(np.float32)
        self.term_weights = np.ascontiguousarray(arrays["coef_terms"].T)
        self.bias = arrays["intercept"].astype(np.float32)
        self.temperature = float(arrays["temperature"])
        self.features = TfidfFeatures(arrays)
        if "lora_a" in arrays:
            from moe_domain_llms.finetune import ADAPTER_FORMAT

            adapter = model.meta.get("adapter") or {}
            if adapter.get("format") != ADAPTER_FORMAT:
                raise ConfigError(
                    f"gate.artefact: {self.artefact_path} holds an encoder adapter of format "
                    f"{adapter.get('format')} (made by moe-domain-llms "
                    f"{model.meta.get('versions', {}).get('moe-domain-llms')}); this version "
                    f"reads format {ADAPTER_FORMAT}; retrain with `moe gate train`"
                )
            self.encoder.adapt(arrays, adapter["base_fingerprint"], where="gate.artefact")
        # Artefacts made before the second opinion have none: the first model decides alone.
        opinion = model.meta.get("second_opinion")
        if f"{PREFIX}coef_lm" in arrays and opinion is None:
            raise ConfigError(
                f"gate.artefact: {self.artefact_path} has second-opinion arrays but no "
                "description of them; retrain with `moe gate train`"
            )
        if opinion is not None:
            consult_below = self.options.consult_below
            self.consult_below = (
                float(opinion["consult_below"]) if consult_below is None else consult_below
            )
            if self.consult_below > 0:
                self.second = SecondOpinion(arrays, opinion, self.options.lm, where="gate.lm")

    async def start(self) -> None:
        import asyncio

        self.model  # noqa: B018 - whether a language model is needed is in the artefact
        await asyncio.to_thread(self.encoder.load)
        if self.second is not None:
            await asyncio.to_thread(self.second.lm.load)

    async def close(self) -> None:
        await self.encoder.close()
        if self.second is not None:
            await self.second.lm.close()

    def first_opinion(
        self, embedding: np.ndarray, text: str
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The first model's probabilities, and the word terms the second model reuses."""
        self.model  # noqa: B018 - loads the artefact on first use
        words = self.features(text)
        indices, weights = words
        logits = embedding @ self.weights + weights @ self.term_weights[indices] + self.bias
        logits = np.exp((logits - logits.max()) / self.temperature)
        return logits / logits.sum(), words

    def unsure(self, probabilities: np.ndarray) -> bool:
        """Whether the second opinion decides (never when the gate has none)."""
        return self.second is not None and float(probabilities.max()) < self.consult_below

    def probabilities(self, text: str) -> np.ndarray:
        self.model  # noqa: B018 - the artefact's adapter must be merged before encoding
        embedding = self.encoder.encode([text])[0]
        first, words = self.first_opinion(embedding, text)
        if self.second is None or not self.unsure(first):
            return first
        state = self.second.lm.encode([text])[0]
        return self.second.probabilities(embedding, words, text, state)

    async def assess(self, text: str) -> tuple[np.ndarray, bool]:
        """Each label's probability, and whether the second opinion gave them."""
        self.model  # noqa: B018 - the artefact's adapter must be merged before encoding
        # Concurrent routes share the encoder's forward passes (and the language model's).
        embedding = await self.encoder.encode_one(text)
        first, words = self.first_opinion(embedding, text)
        if self.second is None or not self.unsure(first):
            return first, False
        state = await self.second.lm.encode_one(text)
        return self.second.probabilities(embedding, words, text, state), True

    async def classify(self, text: str) -> RoutingDecision:
        probabilities, consulted = await self.assess(text)
        detail = ""
        if consulted and self.second is not None:
            detail = (
                f"; the first model was below p={self.consult_below:.2f}, so these are the "
                f"second opinion from {self.second.lm.identity} states"
            )
        decision = self.decide(probabilities, self.method, detail)
        decision.evidence[0]["second_opinion"] = consulted
        return decision

    def train(self, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
        from moe_domain_llms.finetune import FinetuneSettings
        from moe_domain_llms.second_opinion import SecondOpinionSettings
        from moe_domain_llms.training import train_embedding

        epochs = self.options.finetune_epochs
        result = train_embedding(
            self.data_path,
            output or default_output(self.kind),
            # A fresh encoder: this gate's own may carry the old artefact's adapter.
            Encoder(self.options.encoder, where="gate.encoder", runtime=self.options.runtime),
            progress=progress,
            finetune=FinetuneSettings(epochs=epochs) if epochs else None,
            reuse_adapter=Path(reuse) if (reuse := self.options.reuse_adapter) else None,
            second_opinion=(
                SecondOpinionSettings(lm=self.options.lm, layer=self.options.lm_layer)
                if self.options.second_opinion
                else None
            ),
        )
        return with_usage(result, self.artefact_path)
