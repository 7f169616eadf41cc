"""The ``features`` gate: route on what the input looks like, with a trained classifier.

Each request's last user message is measured (:mod:`moe_byt5.features`: length, average word
length, special-character, uppercase and digit ratios, is_binary, code-likeness, line count,
token estimate, function-word ratio, sentence length) and a logistic regression trained on
labelled examples (``data/features_train.csv``, ``moe gate train``) gives each label a
calibrated probability. Labels map to configured experts (``experts: {byt5: moe-expert-byt5}``;
by default a label routes to the expert of the same name).

A request naming a task (``moe.task_type``, the ``/process`` API's ``task``) only goes to an
expert whose card lists that task among its capabilities; a task no expert does is a 400.
``moe.force_expert`` is honoured before any gate runs (the pipeline does it). The decision
reports the features, every label's probability, the confidence and the runner-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from moe_byt5 import artefact, features
from moe_byt5.classifier import FeatureClassifier, train
from moe_core import (
    ChatRequest,
    ConfigError,
    ExpertCard,
    Gate,
    InvalidRequest,
    Options,
    RoutingDecision,
    Tracker,
)
from moe_core.artefacts import default_output, with_usage

DEFAULT_DATA = Path(__file__).parent / "data" / "features_train.csv"
# The seed's name for "each expert's default task": it never restricts routing.
ANY_TASK = "process"


class FeaturesGateOptions(Options):
    artefact: str | None = Field(None, description="Trained artefact; default: the bundled one")
    data: str | None = Field(None, description="Training data (CSV text,label) for `gate train`")
    experts: dict[str, str] = Field(
        default_factory=dict, description="Label to expert name; default: the same name"
    )


class FeaturesGate(Gate):
    """Input features (length, symbols, code-likeness...) + calibrated logistic regression."""

    options: FeaturesGateOptions

    def __init__(self, name: str, options: FeaturesGateOptions) -> None:
        super().__init__(name, options)
        self.artefact_path = Path(options.artefact) if options.artefact else artefact.PACKAGED
        self._classifier: FeatureClassifier | None = None

    @property
    def classifier(self) -> FeatureClassifier:
        """Read on first use (at startup when serving), never when training."""
        if self._classifier is None:
            model = artefact.load(self.artefact_path, where="gate.artefact")
            try:
                self._classifier = FeatureClassifier(model)
            except (KeyError, ValueError) as exc:
                raise ConfigError(
                    f"gate.artefact: {self.artefact_path} does not fit this version ({exc}); "
                    "retrain it with `moe gate train`"
                ) from None
        return self._classifier

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def expert_for(self, label: str) -> str:
        return self.options.experts.get(label, label)

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        unknown = [label for label in self.options.experts if label not in self.labels]
        if unknown:
            raise ConfigError(
                f"gate.experts: {', '.join(unknown)} not a label of {self.artefact_path} "
                f"(labels: {', '.join(self.labels)})"
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

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        text = request.last_user_text()
        values = features.extract(text)
        probabilities = self.classifier.probabilities(values)
        scores = {label: float(p) for label, p in zip(self.labels, probabilities, strict=True)}
        task = request.hints.task_type
        eligible = self._eligible(task, experts)
        ranked = sorted(eligible, key=scores.__getitem__, reverse=True)
        best = ranked[0]
        # Probabilities among the experts that can do the task, so they still sum to one.
        total = sum(scores[label] for label in eligible)
        confidence = scores[best] / total if total else 1.0 / len(eligible)
        rationale = f"input features: {best} (p={scores[best]:.2f})"
        runner_up = None
        if len(ranked) > 1:
            runner_up = self.expert_for(ranked[1])
            rationale += f", runner-up {ranked[1]} (p={scores[ranked[1]]:.2f})"
        excluded = [label for label in self.labels if label not in eligible]
        if excluded:
            rationale += f"; {', '.join(excluded)} cannot do task {task!r}"
        rationale += f"; {_describe(values)}"
        return RoutingDecision(
            experts=[self.expert_for(best)],
            gate=self.name,
            confidence=round(confidence, 4),
            runner_up=runner_up,
            scores={label: round(p, 4) for label, p in scores.items()},
            rationale=rationale,
            evidence=[
                {
                    "label": best,
                    "task": task,
                    "features": {name: round(value, 4) for name, value in values.items()},
                }
            ],
        )

    def _eligible(self, task: str | None, experts: Mapping[str, ExpertCard]) -> list[str]:
        """Labels whose expert can do ``task`` (all of them when no task is named)."""
        if task is None or task == ANY_TASK:
            return list(self.labels)
        eligible = [
            label
            for label in self.labels
            if task in experts[self.expert_for(label)].capabilities
            or not experts[self.expert_for(label)].capabilities  # a card that lists none
        ]
        if not eligible:
            offered = sorted(
                {
                    cap
                    for label in self.labels
                    for cap in experts[self.expert_for(label)].capabilities
                }
            )
            raise InvalidRequest(
                f"unknown task {task!r}; the experts this gate routes to do: {', '.join(offered)}",
                param="task",
                code="unknown_task",
            )
        return eligible

    def train(self, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
        data = Path(self.options.data) if self.options.data else DEFAULT_DATA
        result = train(data, output or default_output(artefact.KIND))
        return with_usage(result, self.artefact_path)


def _describe(values: dict[str, float]) -> str:
    """The features that mostly decide, in words, for the rationale."""
    return (
        f"{int(values['length'])} chars, {int(values['line_count'])} lines, "
        f"special chars {values['special_char_ratio']:.0%}, code-likeness "
        f"{values['code_likeness']:.2f}, function words {values['function_word_ratio']:.0%}"
        + (", binary" if values["is_binary"] else "")
    )
