"""Term features of a trained ``TfidfVectorizer``, repeated without scikit-learn on the routing
path: the learned gates' word terms, the second opinion's character n-grams, the answer-quality
scorer's terms."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

import numpy as np

_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


class TfidfFeatures:
    """scikit-learn's ``TfidfVectorizer`` transform, in plain Python and numpy, from the arrays a
    trained vectorizer leaves behind (prefixed ``tfidf_`` in an artefact, or ``prefix``): a
    dictionary lookup per term instead of a sparse-matrix pipeline per call.

    Two analyzers are repeated: word unigrams and bigrams (``ngram_range=(1, 2)``, the default
    token pattern) and ``char_wb`` character n-grams, whose range the artefact records. Arrays
    without an analyzer are the word kind (every artefact made before there was a choice).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], prefix: str = "tfidf_") -> None:
        self.vocabulary = {term: i for i, term in enumerate(arrays[f"{prefix}terms"].tolist())}
        self.stop_words = frozenset(arrays[f"{prefix}stop_words"].tolist())
        self.idf = arrays[f"{prefix}idf"]
        self.sublinear = bool(arrays[f"{prefix}sublinear"])
        analyzer = arrays.get(f"{prefix}analyzer")
        self.analyzer = "word" if analyzer is None else str(analyzer)
        if self.analyzer not in ("word", "char_wb"):
            raise KeyError(f"{prefix}analyzer {self.analyzer!r} (a later version's)")
        low, high = arrays.get(f"{prefix}ngram_range", np.array([1, 2])).tolist()
        self.ngram_range = (int(low), int(high))

    def terms(self, text: str) -> list[str]:
        """The n-grams scikit-learn's analyzer would count in ``text``."""
        if self.analyzer == "char_wb":
            return _char_wb_ngrams(text.lower(), *self.ngram_range)
        tokens = [t for t in _TOKEN.findall(text.lower()) if t not in self.stop_words]
        return [*tokens, *map(" ".join, itertools.pairwise(tokens))]

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary indices and their l2-normalised tf-idf weights."""
        counts: dict[int, int] = {}
        for term in self.terms(text):
            index = self.vocabulary.get(term)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        indices = np.fromiter(counts, dtype=np.int64, count=len(counts))
        weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear:
            weights = 1 + np.log(weights)
        weights *= self.idf[indices]
        norm = np.sqrt(weights @ weights)
        return indices, weights / norm if norm else weights


def _char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams inside word boundaries, each word padded with a space on both sides,
    as scikit-learn's ``char_wb`` analyzer makes them (a word shorter than n counts once)."""
    grams = []
    for word in text.split():
        padded = f" {word} "
        for n in range(low, high + 1):
            grams += [padded[i : i + n] for i in range(max(1, len(padded) - n + 1))]
            if len(padded) <= n:
                break
    return grams
