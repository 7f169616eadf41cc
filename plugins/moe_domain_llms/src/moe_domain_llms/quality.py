"""Predicting, from the prompt alone, whether a cheap expert's answer will be as good as a
strong expert's: the learned half of a quality-vs-cost router.

Recorded outcomes (a prompt, whether the weak and the strong expert got it right, or their
scores) teach a logistic regression over features of the prompt: its length and shape, how many
numbers it carries and how large they are, question-type markers (negations such as NOT/EXCEPT,
two-statement questions, passages, formulas), its answer options' characteristics, and
optionally its all-MiniLM-L6-v2 sentence embedding. The result is
``P(weak is as good | prompt)``; the router sends a request to the strong expert when that falls
below a threshold.

The model is an average of logistic regressions fitted at several regularisation strengths
rather than one strength picked by cross-validation: on prompts from unseen topics (MMLU subjects
held out) the strength that cross-validation picks swings from fold to fold on differences within
its noise, and each swing shifts the whole probability scale; averaging the members' probabilities
removes that choice and its variance, for a few hundred extra multiply-adds per request.

The threshold is calibrated to a *target strong share*: the out-of-fold probabilities of the
training prompts (each scored by a model that never saw it) give the distribution that unseen
prompts will follow, and its quantiles say which threshold sends, say, 30% of traffic to the
strong expert. The artefact keeps those quantiles, so a deployment can change its share without
retraining.

Routing needs numpy only (and the encoder, when the artefact was trained with embeddings).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_C = (0.05, 0.2, 1.0)  # regularisation strengths of the averaged members
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_OPTION = re.compile(r"^\(?([A-J])[.)] ?(.*)$", re.M)
_WORD = re.compile(r"[A-Za-z]+")
_NEGATION = re.compile(r"\bnot\b|\bexcept\b|\bleast\b|\bfalse\b|\bincorrect\b")
_PAIRED = re.compile(r"true, (?:true|false)|false, (?:true|false)|wrong, (?:wrong|not wrong)")
_FORMULA = re.compile(r"[=^+*/<>]|\\frac|\bsqrt\b|\blog\b")
_ROMAN = re.compile(r"\b(?:ii|iii|iv)\b\.?", re.I)
_AGGREGATE = re.compile(r"all of the above|none of the above|\bboth\b")
_QUANTITY = re.compile(
    r"\b(?:each|every|per|times|twice|thrice|half|third|quarter|percent|fraction|ratio|average|"
    r"remaining|rest|left|total|more than|less than)\b"
)
_TIME = re.compile(r"\b(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)\b")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_NUMERIC_OPTION = re.compile(r"^[-+$\d.,/%\s()]+\S*$")

FEATURE_NAMES = (
    "log_stem_chars",
    "log_stem_words",
    "stem_lines",
    "log_numbers",
    "log_stem_numbers",
    "distinct_number_share",
    "has_decimal",
    "has_percent",
    "has_money",
    "log_largest_number",
    "negation",
    "two_statements",
    "paired_options",
    "which_of_the_following",
    "passage",
    "formula",
    "roman_numerals",
    "aggregate_option",
    "numeric_options",
    "log_mean_option_chars",
    "log_option_chars_spread",
    "log_longest_option",
    "options",
    "mean_word_chars",
    "questions",
    "sentences",
    "quantity_words",
    "time_words",
)


def prompt_features(text: str) -> np.ndarray:
    """Features of one prompt that say how hard it is likely to be, in :data:`FEATURE_NAMES`
    order. Cheap (regular expressions), so they cost nothing on the routing path."""
    options = [option for _, option in _OPTION.findall(text)]
    stem = _OPTION.split(text, maxsplit=1)[0] if options else text
    stem = stem.replace("Answer:", "")
    numbers = _NUMBER.findall(text)
    stem_numbers = _NUMBER.findall(stem)
    values = []
    for number in stem_numbers:
        try:
            values.append(abs(float(number.replace(",", ""))))
        except ValueError:
            continue
    option_chars = [len(option) for option in options] or [0]
    lower = text.lower()
    words = _WORD.findall(stem)
    return np.array(
        [
            math.log1p(len(stem)),
            math.log1p(len(words)),
            stem.count("\n"),
            math.log1p(len(numbers)),
            math.log1p(len(stem_numbers)),
            len(set(numbers)) / (1 + len(numbers)),
            float(any("." in number for number in stem_numbers)),
            float("%" in stem or "percent" in lower),
            float("$" in stem),
            math.log1p(min(max(values, default=0.0), 1e12)),
            float(bool(_NEGATION.search(lower))),
            float("statement 1" in lower),
            float(bool(_PAIRED.search(lower))),
            float("which of the following" in lower),
            float("refers to the following" in lower or len(stem) > 1500),
            float(bool(_FORMULA.search(stem))),
            float(bool(_ROMAN.search(text))),
            float(bool(_AGGREGATE.search(lower))),
            float(np.mean([bool(_NUMERIC_OPTION.match(o.strip())) for o in options]))
            if options
            else 0.0,
            math.log1p(float(np.mean(option_chars))),
            math.log1p(float(np.std(option_chars))),
            math.log1p(max(option_chars)),
            float(len(options)),
            float(np.mean([len(word) for word in words])) if words else 0.0,
            float(lower.count("?")),
            float(len(_SENTENCE_END.findall(stem))),
            float(len(_QUANTITY.findall(lower))),
            float(len(_TIME.findall(lower))),
        ],
        dtype=np.float64,
    )


def feature_matrix(texts: Sequence[str]) -> np.ndarray:
    """:func:`prompt_features` of several texts, one row each (an empty batch has 0 rows)."""
    return (
        np.stack([prompt_features(text) for text in texts])
        if texts
        else np.zeros((0, len(FEATURE_NAMES)))
    )


def weak_not_as_good(
    weak: Sequence[float] | np.ndarray, strong: Sequence[float] | np.ndarray, margin: float = 0.0
) -> np.ndarray:
    """The training label: the strong expert did better than the weak one by more than
    ``margin`` (0 for right/wrong outcomes; a tolerance for graded scores)."""
    return np.asarray(strong, dtype=float) - np.asarray(weak, dtype=float) > margin


@dataclass
class QualityPredictor:
    """``P(weak answer is as good as the strong one)`` for a prompt, the mean over fitted linear
    models (one per regularisation strength); plain arrays, so it loads from an artefact without
    pickle and is cheap to call.

    A cascade can use it as an escalation prior: escalate when :meth:`predict_proba` is below
    :meth:`threshold_for` its budgeted share, before (or beside) reading the weak answer.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (members, weights): the scaled hand features, then the embedding (if any)
    intercept: np.ndarray  # (members,)
    quantiles: np.ndarray  # out-of-fold P(weak as good) at shares 0, 0.01, ..., 1
    encoder: Any = None  # an Encoder when the model reads embeddings
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A single model (an artefact from before members were averaged) is a one-member average.
        self.coef = np.atleast_2d(self.coef)
        self.intercept = np.atleast_1d(np.asarray(self.intercept, dtype=float))
        if len(self.coef) != len(self.intercept):
            raise ValueError("one intercept per member's weights")

    @property
    def uses_embeddings(self) -> bool:
        return self.coef.shape[1] > len(self.mean)

    def threshold_for(self, strong_share: float) -> float:
        """The P(weak as good) below which a request goes to the strong expert so that
        ``strong_share`` of traffic like the training prompts does."""
        if not 0 <= strong_share <= 1:
            raise ValueError(f"strong share must be within 0..1, not {strong_share}")
        shares = np.linspace(0, 1, len(self.quantiles))
        return float(np.interp(strong_share, shares, self.quantiles))

    def logits(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Each member's log-odds that the weak answer is *not* as good: (texts, members)."""
        features = (feature_matrix(texts) - self.mean) / self.scale
        if self.uses_embeddings:
            if embeddings is None:
                if self.encoder is None:
                    raise ValueError("this predictor reads embeddings; give them or an encoder")
                embeddings = self.encoder.encode(list(texts))
            features = np.hstack([features, embeddings])
        return features @ self.coef.T + self.intercept

    def predict_proba(
        self, texts: Sequence[str] | str, embeddings: np.ndarray | None = None
    ) -> np.ndarray | float:
        """P(weak is as good) for one text (a float) or several (an array)."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if embeddings is not None and single:
            embeddings = np.asarray(embeddings).reshape(1, -1)
        probability = _weak_as_good(self.logits(batch, embeddings)).mean(axis=1)
        return float(probability[0]) if single else probability

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "feature_mean": self.mean,
            "feature_scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "quantiles": self.quantiles,
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], encoder: Any = None, meta: dict[str, Any] | None = None
    ) -> QualityPredictor:
        return cls(
            mean=arrays["feature_mean"],
            scale=arrays["feature_scale"],
            coef=arrays["coef"],
            intercept=arrays["intercept"],
            quantiles=arrays["quantiles"],
            encoder=encoder,
            meta=meta or {},
        )


def _weak_as_good(logits: np.ndarray) -> np.ndarray:
    """P(weak as good) from log-odds of the opposite, without overflow at extreme logits."""
    return 1 / (1 + np.exp(np.clip(logits, -500, 500)))


def _fit_linear(
    features: np.ndarray,
    embeddings: np.ndarray | None,
    label: np.ndarray,
    c: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    design = (features - mean) / scale
    if embeddings is not None:
        design = np.hstack([design, embeddings])
    if label.all() or not label.any():
        raise ValueError("the outcomes need both cases: weak as good, and strong better")
    model = LogisticRegression(C=c, max_iter=5000).fit(design, label)
    return mean, scale, model.coef_[0], float(model.intercept_[0])


def _design(
    features: np.ndarray, embeddings: np.ndarray | None, mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    design = (features - mean) / scale
    return design if embeddings is None else np.hstack([design, embeddings])


def _fit_members(
    features: np.ndarray,
    embeddings: np.ndarray | None,
    label: np.ndarray,
    strengths: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One logistic regression per strength, on the same scaling: mean, scale, the members'
    weights (members, dims) and intercepts (members,)."""
    fitted = [_fit_linear(features, embeddings, label, c) for c in strengths]
    mean, scale = fitted[0][0], fitted[0][1]
    return (
        mean,
        scale,
        np.stack([coef for _, _, coef, _ in fitted]),
        np.array([intercept for *_, intercept in fitted]),
    )


def _held_out(
    features: np.ndarray,
    embeddings: np.ndarray | None,
    label: np.ndarray,
    strengths: Sequence[float],
    parts: list[np.ndarray],
) -> np.ndarray:
    """Out-of-fold P(weak as good): each part scored by members fitted on the others."""
    held_out = np.zeros(len(label))
    everything = np.concatenate(parts)
    for part in parts:
        train = np.setdiff1d(everything, part)
        mean, scale, coef, intercept = _fit_members(
            features[train],
            None if embeddings is None else embeddings[train],
            label[train],
            strengths,
        )
        design = _design(
            features[part], None if embeddings is None else embeddings[part], mean, scale
        )
        held_out[part] = _weak_as_good(design @ coef.T + intercept).mean(axis=1)
    return held_out


def fit(
    texts: Sequence[str],
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
    *,
    embeddings: np.ndarray | None = None,
    c: float | Sequence[float] = DEFAULT_C,
    margin: float = 0.0,
    folds: int = 5,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> tuple[QualityPredictor, np.ndarray]:
    """Fit a predictor on recorded outcomes; also return the out-of-fold P(weak as good) of
    every training prompt (each from models fitted without it), which calibrates thresholds
    and gives honest held-out metrics.

    :param embeddings: one sentence embedding per text, or None for prompt features only.
    :param c: inverse regularisation strength, or several: one member is fitted per strength
        and their probabilities are averaged (nothing is selected, so nothing is tuned on the
        outcomes beyond the members' own weights).
    :param groups: a group per text (a topic, a source): folds then hold out whole groups, so
        the calibration reflects prompts from groups never seen.
    """
    texts = list(texts)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    label = weak_not_as_good(weak, strong, margin)
    features = feature_matrix(texts)
    if groups is None:
        order = np.random.default_rng(seed).permutation(len(texts))
        parts = np.array_split(order, folds)
    else:
        names = np.asarray(groups)
        distinct = sorted(set(names.tolist()))
        if len(distinct) < 2:
            raise ValueError("holding out groups needs at least two groups")
        dealt = {name: i % folds for i, name in enumerate(distinct)}
        part_of = np.array([dealt[name] for name in names.tolist()])
        parts = [np.flatnonzero(part_of == i) for i in range(min(folds, len(dealt)))]
    strengths = [float(c)] if isinstance(c, int | float) else [float(value) for value in c]
    if not strengths:
        raise ValueError("give at least one regularisation strength")
    held_out = _held_out(features, embeddings, label, strengths, parts)
    mean, scale, coef, intercept = _fit_members(features, embeddings, label, strengths)
    # P(weak as good) ascending: the q-th quantile is the threshold that sends q to strong.
    quantiles = np.quantile(held_out, np.linspace(0, 1, 101))
    predictor = QualityPredictor(mean, scale, coef, intercept, quantiles, meta={"c": strengths})
    return predictor, held_out
