"""Scorer ``answer-quality``: a model trained on real answers says whether a cheap answer is wrong.

It reads the question and the cheap expert's answer: the answer's words (TF-IDF of 1-2 grams),
whether its calculator annotations (``<<6*4=24>>``) add up, whether it reaches a ``#### <number>``
final answer and whether that is a whole number, hedging and self-correction words, lengths and
counts. A logistic regression over those gives P(answer is wrong), which is the scorer's doubt.
The bundled artefact is trained on RouteLLM's published Mixtral-8x7B answers to GSM8K
(Apache-2.0), judged against GPT-4's: ``make bench-combiners`` measures the same recipe with
5-fold cross-validation (APGR 0.767 where the best published prompt-only router has 0.622) and
``bench/cascade_scorer.py --write-artefact`` rebuilds it. For other tasks, train it on your own
answers and outcomes with :func:`fit`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from moe_core import ConfigError, ExpertResult, Options, Run, Scorer, Verdict
from moe_core.answers import HEDGES, UNSURE, wrong_calculations
from moe_domain_llms import artefacts
from moe_domain_llms.terms import TfidfFeatures
from moe_domain_llms.training import _tfidf_arrays

KIND = "answer-quality"
PACKAGED = artefacts.PACKAGED / f"{KIND}.npz"
FINAL = re.compile(r"####\s*\$?\s*([-\d.,/]+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
REBUILD = (
    "rebuild it with moe_domain_llms.answer_quality.fit and moe_domain_llms.artefacts.save "
    "(bench/cascade_scorer.py --write-artefact PATH does it for GSM8K)"
)


def answer_features(question: str, answer: str) -> list[float]:
    """The hand-made signals of a wrong answer (beside its words)."""
    calls, wrong = wrong_calculations(answer)
    final = FINAL.search(answer)
    try:
        value = float(final.group(1).replace(",", "")) if final else math.nan
    except ValueError:
        value = math.nan
    lowered = answer.lower()
    return [
        math.log1p(len(answer)),
        answer.count("\n"),
        calls,
        wrong,
        float(wrong > 0),
        float(final is not None),
        float(not math.isnan(value) and value.is_integer()),
        float(not math.isnan(value) and value < 0),
        len(HEDGES.findall(lowered)),
        float(bool(UNSURE.search(lowered))),
        math.log1p(len(question)),
        len(_NUMBER.findall(question)),
        len(_NUMBER.findall(answer)),
        0.0 if math.isnan(value) else math.log1p(abs(value)),
    ]


def fit(questions: Sequence[str], answers: Sequence[str], wrong: np.ndarray) -> dict[str, Any]:
    """Train on answers labelled wrong (True) or right; the arrays an artefact stores."""
    import scipy.sparse as sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    handmade = np.array([answer_features(q, a) for q, a in zip(questions, answers, strict=True)])
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    terms = words.fit_transform(list(answers))
    scale = StandardScaler().fit(handmade)
    features = sparse.hstack([terms, scale.transform(handmade)]).tocsr()
    model = LogisticRegression(C=0.5, max_iter=5000).fit(features, wrong)
    width = terms.shape[1]
    return {
        **_tfidf_arrays(words),
        "coef_terms": model.coef_[0, :width],
        "coef_handmade": model.coef_[0, width:],
        "handmade_mean": scale.mean_,
        "handmade_scale": scale.scale_,
        "intercept": model.intercept_,
    }


class AnswerQualityModel:
    """P(answer is wrong) from a trained artefact's arrays, without scikit-learn at run time."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.terms = TfidfFeatures(arrays)
        self.coef_terms = arrays["coef_terms"]
        self.coef_handmade = arrays["coef_handmade"]
        self.mean = arrays["handmade_mean"]
        self.scale = arrays["handmade_scale"]
        self.intercept = float(arrays["intercept"][0])

    def p_wrong(self, question: str, answer: str) -> float:
        indices, weights = self.terms(answer)
        handmade = (np.array(answer_features(question, answer)) - self.mean) / self.scale
        logit = self.intercept + weights @ self.coef_terms[indices] + handmade @ self.coef_handmade
        return float(1 / (1 + math.exp(-logit)))


class AnswerQualityOptions(Options):
    artefact: str | None = Field(None, description="Trained artefact; default: the bundled one")


class AnswerQualityScorer(Scorer):
    """A trained model's probability that the answer is wrong."""

    options: AnswerQualityOptions

    def __init__(self, name: str, options: AnswerQualityOptions) -> None:
        super().__init__(name, options)
        path = Path(options.artefact) if options.artefact else PACKAGED
        loaded = artefacts.load(
            path, KIND, where="combiner.scorer_options.artefact", retrain=REBUILD
        )
        try:
            self.model = AnswerQualityModel(loaded.arrays)
        except KeyError as exc:
            raise ConfigError(
                f"combiner.scorer_options.artefact: {path} lacks the array {exc}; {REBUILD}"
            ) from None

    async def score(self, run: Run, answer: ExpertResult) -> Verdict:
        p = self.model.p_wrong(run.request.last_user_text(), answer.content)
        return Verdict(p, f"the trained answer model puts P(wrong) at {p:.2f}")
