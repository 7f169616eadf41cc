"""Predicting, from the prompt alone, whether a cheap expert's answer will be as good as a
strong expert's: the learned half of a quality-vs-cost router.

Recorded outcomes (a prompt, whether the weak and the strong expert got it right, or their
scores) teach a logistic regression over features of the prompt: its length and shape, how many
numbers it carries and how large they are, question-type markers (negations such as NOT/EXCEPT,
two-statement questions, passages, formulas), its answer options' characteristics, and
optionally vector *blocks* (:data:`BLOCKS`): the all-MiniLM-L6-v2 sentence embedding of the
question stem and, separately, of its answer options, and the mean hidden state of a small
language model (:mod:`moe_domain_llms.lm_states`). The result is ``P(weak is as good | prompt)``;
the router sends a request to the strong expert when that falls below a threshold.

Why those blocks (``bench/routing.py``, held out by MMLU subject, every choice made by inner
cross-validation on the training subjects): one embedding of the whole prompt mixes what is asked
with the candidate answers; the stem and the options embedded apart raised inner APGR from 0.564
to 0.575, and the language model's states on top to 0.605. The LM block is standardised and then
shrunk by :data:`LM_WEIGHT`, which penalises its 576 weights more than a hand feature's: at full
weight it overfits the training subjects (0.596), and a second LM layer beside it did worse still.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_C = (0.05, 0.2, 1.0)  # regularisation strengths of the averaged members
PROMPT, STEM, OPTIONS, LM = "prompt", "stem", "options", "lm"
BLOCKS = {
    PROMPT: "sentence embedding of the whole prompt (artefacts from before the split)",
    STEM: "sentence embedding of the question stem (the prompt without its answer options)",
    OPTIONS: "sentence embedding of the answer options, one per line (zeros when there are none)",
    LM: "mean hidden state of a language model's layer, standardised and scaled by LM_WEIGHT",
}
SENTENCE_BLOCKS = (PROMPT, STEM, OPTIONS)
DEFAULT_BLOCKS = (STEM, OPTIONS, LM)
LM_WEIGHT = 0.15  # the LM block's standardised columns are multiplied by this (see above)
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


def split_prompt(text: str) -> tuple[str, str]:
    """The question stem and the answer options (one per line, without their letters; "" when
    the prompt lists none), as the stem and options blocks embed them."""
    options = [option.strip() for _, option in _OPTION.findall(text)]
    stem = _OPTION.split(text, maxsplit=1)[0] if options else text
    return stem.replace("Answer:", "").strip(), "\n".join(options)


def prompt_vectors(
    texts: Sequence[str], blocks: Sequence[str], encoder: Any = None, lm: Any = None
) -> dict[str, np.ndarray]:
    """Each block's vectors for ``texts`` (an :class:`~moe_domain_llms.embeddings.Encoder` for
    the sentence blocks, an :class:`~moe_domain_llms.lm_states.LMStates` for the LM one)."""
    texts = list(texts)
    vectors: dict[str, np.ndarray] = {}
    if any(block in SENTENCE_BLOCKS for block in blocks) and encoder is None:
        raise ValueError(f"blocks {list(blocks)} need a sentence encoder")
    if LM in blocks and lm is None:
        raise ValueError("the lm block needs a language model (LMStates)")
    parts = [split_prompt(text) for text in texts]
    for block in blocks:
        if block == PROMPT:
            vectors[block] = encoder.encode(texts)
        elif block == STEM:
            vectors[block] = encoder.encode([stem for stem, _ in parts])
        elif block == OPTIONS:
            listed = [i for i, (_, options) in enumerate(parts) if options]
            found = np.zeros((len(texts), 384), np.float32)
            if listed:
                found[listed] = encoder.encode([parts[i][1] for i in listed])
            vectors[block] = found
        elif block == LM:
            vectors[block] = lm.encode(texts)
        else:
            raise ValueError(f"unknown block {block!r}; known: {', '.join(BLOCKS)}")
    return vectors


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


Vectors = Mapping[str, np.ndarray]


def _as_blocks(embeddings: Vectors | np.ndarray | None) -> dict[str, np.ndarray]:
    """Block vectors by name; a bare array is the whole-prompt embedding (the original design)."""
    if embeddings is None:
        return {}
    if isinstance(embeddings, np.ndarray):
        return {PROMPT: embeddings}
    unknown = [name for name in embeddings if name not in BLOCKS]
    if unknown:
        raise ValueError(f"unknown blocks {unknown}; known: {', '.join(BLOCKS)}")
    return dict(embeddings)


@dataclass
class QualityPredictor:
    """``P(weak answer is as good as the strong one)`` for a prompt, the mean over fitted linear
    models (one per regularisation strength); plain arrays, so it loads from an artefact without
    pickle and is cheap to call.

    The design has a column per hand feature, then each of :attr:`blocks` in order; ``mean`` and
    ``scale`` centre and scale every column (0 and 1 for the sentence embeddings, which are unit
    vectors already). Block vectors not given are computed with :attr:`encoder` and :attr:`lm`.

    A cascade can use it as an escalation prior: escalate when :meth:`predict_proba` is below
    :meth:`threshold_for` its budgeted share, before (or beside) reading the weak answer.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (members, columns)
    intercept: np.ndarray  # (members,)
    quantiles: np.ndarray  # out-of-fold P(weak as good) at shares 0, 0.01, ..., 1
    blocks: tuple[str, ...] = ()
    encoder: Any = None  # an Encoder when a sentence block is read
    lm: Any = None  # an LMStates when the lm block is read
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A single model (an artefact from before members were averaged) is a one-member average.
        self.coef = np.atleast_2d(self.coef)
        self.intercept = np.atleast_1d(np.asarray(self.intercept, dtype=float))
        if len(self.coef) != len(self.intercept):
            raise ValueError("one intercept per member's weights")
        self.blocks = tuple(self.blocks)
        extra = self.coef.shape[1] - len(self.mean)
        if extra > 0 and not self.blocks:
            # Artefacts from before blocks: the hand features, then the whole-prompt embedding,
            # which was read as it is.
            self.blocks = (PROMPT,)
            self.mean = np.concatenate([self.mean, np.zeros(extra)])
            self.scale = np.concatenate([self.scale, np.ones(extra)])
        if self.coef.shape[1] != len(self.mean) or len(self.mean) != len(self.scale):
            raise ValueError("the weights, centres and scales must cover the same columns")
        _as_blocks(dict.fromkeys(self.blocks, np.zeros(0)))  # names are known

    @property
    def uses_embeddings(self) -> bool:
        """Whether a sentence encoder is needed."""
        return any(block in SENTENCE_BLOCKS for block in self.blocks)

    @property
    def uses_lm(self) -> bool:
        """Whether a language model's states are needed."""
        return LM in self.blocks

    def threshold_for(self, strong_share: float) -> float:
        """The P(weak as good) below which a request goes to the strong expert so that
        ``strong_share`` of traffic like the training prompts does."""
        if not 0 <= strong_share <= 1:
            raise ValueError(f"strong share must be within 0..1, not {strong_share}")
        shares = np.linspace(0, 1, len(self.quantiles))
        return float(np.interp(strong_share, shares, self.quantiles))

    def design(
        self, texts: Sequence[str], embeddings: Vectors | np.ndarray | None = None
    ) -> np.ndarray:
        """The scaled design matrix of ``texts``, computing the block vectors not given."""
        given = _as_blocks(embeddings)
        missing = [block for block in self.blocks if block not in given]
        if missing:
            if (self.uses_embeddings and self.encoder is None) or (
                LM in missing and self.lm is None
            ):
                raise ValueError(
                    f"this predictor reads {', '.join(missing)}; give them, or an encoder "
                    "(and a language model for lm)"
                )
            given.update(prompt_vectors(texts, missing, self.encoder, self.lm))
        columns = [feature_matrix(texts)] + [given[block] for block in self.blocks]
        return (np.hstack(columns) - self.mean) / self.scale

    def logits(
        self, texts: Sequence[str], embeddings: Vectors | np.ndarray | None = None
    ) -> np.ndarray:
        """Each member's log-odds that the weak answer is *not* as good: (texts, members)."""
        return self.design(texts, embeddings) @ self.coef.T + self.intercept

    def predict_proba(
        self, texts: Sequence[str] | str, embeddings: Vectors | np.ndarray | None = None
    ) -> np.ndarray | float:
        """P(weak is as good) for one text (a float) or several (an array)."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if embeddings is not None and single:
            embeddings = {
                name: np.asarray(vector).reshape(1, -1)
                for name, vector in _as_blocks(embeddings).items()
            }
        probability = _weak_as_good(self.logits(batch, embeddings)).mean(axis=1)
        return float(probability[0]) if single else probability

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays an artefact stores; :attr:`blocks` go in its metadata."""
        return {
            "feature_mean": self.mean,
            "feature_scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "quantiles": self.quantiles,
        }

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        encoder: Any = None,
        meta: dict[str, Any] | None = None,
        lm: Any = None,
    ) -> QualityPredictor:
        meta = meta or {}
        return cls(
            mean=arrays["feature_mean"],
            scale=arrays["feature_scale"],
            coef=arrays["coef"],
            intercept=arrays["intercept"],
            quantiles=arrays["quantiles"],
            blocks=tuple(meta.get("blocks") or ()),
            encoder=encoder,
            lm=lm,
            meta=meta,
        )


def _weak_as_good(logits: np.ndarray) -> np.ndarray:
    """P(weak as good) from log-odds of the opposite, without overflow at extreme logits."""
    return 1 / (1 + np.exp(np.clip(logits, -500, 500)))


def _columns(texts: Sequence[str], blocks: dict[str, np.ndarray]) -> np.ndarray:
    return np.hstack([feature_matrix(texts), *blocks.values()])


def _scaling(columns: np.ndarray, blocks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-column centre and scale: hand features and the LM block standardised (the LM's scale
    divided by :data:`LM_WEIGHT`), sentence embeddings left as they are."""
    mean = columns.mean(axis=0)
    scale = columns.std(axis=0)
    scale[scale == 0] = 1.0
    start = len(FEATURE_NAMES)
    for name, vectors in blocks.items():
        span = slice(start, start + vectors.shape[1])
        if name in SENTENCE_BLOCKS:
            mean[span], scale[span] = 0.0, 1.0
        elif name == LM:
            scale[span] /= LM_WEIGHT
        start = span.stop
    return mean, scale


def _fit_members(
    columns: np.ndarray,
    blocks: dict[str, np.ndarray],
    label: np.ndarray,
    strengths: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One logistic regression per strength, on the same scaling: mean, scale, the members'
    weights (members, columns) and intercepts (members,). Each member starts from the previous
    one's solution (strengths in the order given), which saves iterations, not accuracy."""
    from sklearn.linear_model import LogisticRegression

    if label.all() or not label.any():
        raise ValueError("the outcomes need both cases: weak as good, and strong better")
    mean, scale = _scaling(columns, blocks)
    design = (columns - mean) / scale
    model = LogisticRegression(max_iter=5000, warm_start=True)
    coef, intercept = [], []
    for c in strengths:
        model.set_params(C=c).fit(design, label)
        coef.append(model.coef_[0].copy())
        intercept.append(float(model.intercept_[0]))
    return mean, scale, np.stack(coef), np.array(intercept)


def _held_out(
    columns: np.ndarray,
    blocks: dict[str, np.ndarray],
    label: np.ndarray,
    strengths: Sequence[float],
    parts: list[np.ndarray],
) -> np.ndarray:
    """Out-of-fold P(weak as good): each part scored by members fitted on the others."""
    held_out = np.zeros(len(label))
    everything = np.concatenate(parts)
    for part in parts:
        train = np.setdiff1d(everything, part)
        subset = {name: vectors[train] for name, vectors in blocks.items()}
        mean, scale, coef, intercept = _fit_members(columns[train], subset, label[train], strengths)
        design = (columns[part] - mean) / scale
        held_out[part] = _weak_as_good(design @ coef.T + intercept).mean(axis=1)
    return held_out


def fit(
    texts: Sequence[str],
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
    *,
    embeddings: Vectors | np.ndarray | None = None,
    c: float | Sequence[float] = DEFAULT_C,
    margin: float = 0.0,
    folds: int = 5,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    calibrate: bool = True,
) -> tuple[QualityPredictor, np.ndarray | None]:
    """Fit a predictor on recorded outcomes; also return the out-of-fold P(weak as good) of
    every training prompt (each from models fitted without it), which calibrates thresholds
    and gives honest held-out metrics.

    :param embeddings: each block's vectors by name (see :data:`BLOCKS`; the design reads them
        in the order given), a bare array for the whole-prompt embedding, or None for prompt
        features only.
    :param c: inverse regularisation strength, or several: one member is fitted per strength
        and their probabilities are averaged (nothing is selected, so nothing is tuned on the
        outcomes beyond the members' own weights).
    :param groups: a group per text (a topic, a source): folds then hold out whole groups, so
        the calibration reflects prompts from groups never seen.
    :param calibrate: False skips the out-of-fold pass (``folds`` more fits) when only the
        ranking is wanted; the quantiles then come from the training prompts' own (optimistic)
        probabilities and no held-out probabilities are returned.
    """
    texts = list(texts)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    label = weak_not_as_good(weak, strong, margin)
    blocks = _as_blocks(embeddings)
    for name, vectors in blocks.items():
        if len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} {name} vectors for {len(texts)} texts")
    columns = _columns(texts, blocks)
    strengths = [float(c)] if isinstance(c, int | float) else [float(value) for value in c]
    if not strengths:
        raise ValueError("give at least one regularisation strength")
    parts = _parts(len(texts), folds, seed, groups) if calibrate else []
    mean, scale, coef, intercept = _fit_members(columns, blocks, label, strengths)
    held_out = None
    if calibrate:
        held_out = _held_out(columns, blocks, label, strengths, parts)
        probabilities = held_out
    else:
        probabilities = _weak_as_good((columns - mean) / scale @ coef.T + intercept).mean(axis=1)
    # P(weak as good) ascending: the q-th quantile is the threshold that sends q to strong.
    quantiles = np.quantile(probabilities, np.linspace(0, 1, 101))
    predictor = QualityPredictor(
        mean, scale, coef, intercept, quantiles, tuple(blocks), meta={"c": strengths}
    )
    return predictor, held_out


def _parts(count: int, folds: int, seed: int, groups: Sequence[str] | None) -> list[np.ndarray]:
    """The out-of-fold parts: shuffled rows, or whole groups dealt round-robin."""
    if groups is None:
        return np.array_split(np.random.default_rng(seed).permutation(count), folds)
    names = np.asarray(groups)
    distinct = sorted(set(names.tolist()))
    if len(distinct) < 2:
        raise ValueError("holding out groups needs at least two groups")
    dealt = {name: i % folds for i, name in enumerate(distinct)}
    part_of = np.array([dealt[name] for name in names.tolist()])
    return [np.flatnonzero(part_of == i) for i in range(min(folds, len(dealt)))]
