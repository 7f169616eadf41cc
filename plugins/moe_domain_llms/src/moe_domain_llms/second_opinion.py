"""The embedding gate's second opinion: a language model's reading of the queries it is unsure of.

The gate's first model (LoRA-adapted sentence embedding plus word terms) is cheap and right on
most queries. Where it is unsure (its top probability below :data:`CONSULT_BELOW`), a second
logistic regression decides instead. It reads what the first one reads plus two things it lacks:
character 2-5-grams of the query (misspellings, and the stems and suffixes of drug, malware and
instrument names the encoder has never seen) and the mean-pooled layer-20 states of SmolLM2-135M
(:class:`~moe_domain_llms.lm_states.LMStates`), a model trained on far more text than the
sentence encoder and with a larger vocabulary. Only the consulted queries pay for the language
model, so throughput stays near the first model's.

Chosen on the validation slice of the train split (1,090 rows held out of every fit; the test
split played no part), with the adapted embedding still weighed at 0.5 (see
:data:`moe_domain_llms.training.ADAPTED_EMBEDDING_SCALE` for what 0.1 changed): the first model
alone scored 0.936 in-domain and 0.905 out-of-domain to ``general``; the second model on every
query 0.948 and 0.928 (79 errors down to 63); consulted only below 0.8 (13% of the slice) 0.948
and 0.925, below 0.6 (5%) 0.950 and 0.908. Layers 4, 6, 10, 12, 14 and 18 did no better than 8,
which is also among the cheapest; character n-grams added to the second model alone were worth
0.004 in-domain and 0.010 out-of-domain.

With 2,831 more train rows (10,412 in all) the deeper layers pulled ahead. On the same 1,137-row
validation slice, new rows in the fit only, the second model alone made 42 in-domain and 23
out-of-domain errors with layer 8, 45/26 with 10, 38/22 with 12, 35/21 with 14, 36/22 with 16,
33/20 with 20, 41/20 with 24 and 47/16 with all 30; the cascade 36/20 with layer 8 and 29/19
with layer 20. Layer 20 is the default: it costs 12 more layers on the consulted queries only,
about 17% of the gate's decisions per second under load (440 to 365 on the slice's texts, same
run).

The language model's states enter standardised and divided by the square root of their width,
so that the one L2 penalty weighs them like a unit vector; the standardisation is folded into the
saved coefficients, so routing multiplies the raw states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moe_core import ConfigError
from moe_domain_llms.lm_states import DEFAULT_LM, LMStates
from moe_domain_llms.terms import TfidfFeatures

# Consult the second model when the first one's top probability is below this.
CONSULT_BELOW = 0.8
# Which layer's output the language model gives (only the layers up to it run).
LM_LAYER = 20
# Arrays of the second model in an artefact start with this.
PREFIX = "second_"
CHAR_NGRAMS = (2, 5)


@dataclass
class SecondOpinionSettings:
    """How training fits the second model.

    :param lm: the language model name (``package:...`` or a folder) whose states it reads.
    :param layer: the layer read (1 = the first transformer block's output).
    :param consult_below: the artefact's default: consult below this first-model probability.
    """

    lm: str = DEFAULT_LM
    layer: int = LM_LAYER
    consult_below: float = CONSULT_BELOW
    cache_dir: str | None = field(default=None, repr=False)


@dataclass
class FittedSecondOpinion:
    """A second model as artefact arrays, its metadata, and its probabilities for every row
    training embedded (so training can report the cascade the gate will route with)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    probabilities: np.ndarray


def fit_second_opinion(
    settings: SecondOpinionSettings,
    texts: list[str],
    vectors: np.ndarray,
    words: Any,
    fit_rows: slice,
    val_rows: slice,
    fit_labels: list[str],
    val_labels: list[str],
    classes: list[str],
    *,
    embedding_scale: float,
    regularisation: float,
    progress: Any = lambda iterable, **_: iterable,
) -> FittedSecondOpinion:
    """Fit the second model on ``fit_rows`` and its temperature on ``val_rows``.

    :param texts: every row's text, in the order of ``vectors`` (sentence embeddings) and
        ``words`` (the first model's word tf-idf matrix).
    """
    import scipy.sparse as sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from moe_domain_llms.training import _fit_temperature, _tfidf_arrays

    lm = LMStates(settings.lm, settings.layer, where="gate.lm", cache_dir=settings.cache_dir)
    lm.load()
    batches = range(0, len(texts), 64)
    states = np.concatenate(
        [
            lm.encode(texts[start : start + 64])
            for start in progress(batches, desc="language-model states", unit="batch")
        ]
    )
    chars = TfidfVectorizer(
        analyzer="char_wb", ngram_range=CHAR_NGRAMS, sublinear_tf=True, min_df=2
    ).fit(texts[fit_rows])
    scaler = StandardScaler().fit(states[fit_rows])
    lm_scale = 1 / np.sqrt(states.shape[1])
    features = sparse.hstack(
        [
            sparse.csr_matrix(vectors * embedding_scale),
            words,
            chars.transform(texts),
            sparse.csr_matrix(scaler.transform(states) * lm_scale),
        ]
    ).tocsr()
    classifier = LogisticRegression(C=regularisation, max_iter=5000)
    classifier.fit(features[fit_rows], fit_labels)
    assert [str(c) for c in classifier.classes_] == classes
    logits = classifier.decision_function(features)
    temperature = _fit_temperature(logits[val_rows], np.array(val_labels), classes)
    # Column blocks of the coefficients, in the order the features were stacked.
    ends = np.cumsum([vectors.shape[1], words.shape[1], len(chars.vocabulary_)])
    coef = classifier.coef_
    # Standardisation folded in: (h - mean) / std * s @ W = h @ (W * s / std) - mean @ (...).
    coef_lm = (coef[:, ends[2] :] * (lm_scale / scaler.scale_)).T
    arrays = {
        f"{PREFIX}coef_embedding": coef[:, : ends[0]] * embedding_scale,
        f"{PREFIX}coef_words": coef[:, ends[0] : ends[1]],
        f"{PREFIX}coef_chars": coef[:, ends[1] : ends[2]],
        f"{PREFIX}coef_lm": coef_lm,
        f"{PREFIX}intercept": classifier.intercept_ - scaler.mean_ @ coef_lm,
        f"{PREFIX}temperature": np.array(temperature),
        **_tfidf_arrays(chars, prefix="char_"),
    }
    scaled = logits / temperature
    probabilities = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    meta = {
        "lm": settings.lm,
        "layer": settings.layer,
        "consult_below": settings.consult_below,
        "char_ngrams": list(CHAR_NGRAMS),
        "temperature": round(float(temperature), 4),
    }
    return FittedSecondOpinion(arrays, meta, probabilities)


class SecondOpinion:
    """A trained second model and the language model it reads, as the gate consults them.

    :param lm: the configured language model; it must be the one the artefact was trained on.
    :param where: the config key path, for error messages.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        meta: dict[str, Any],
        lm: str,
        *,
        where: str,
        cache_dir: str | None = None,
    ) -> None:
        if meta.get("lm") != lm:
            raise ConfigError(
                f"{where}: the artefact's second opinion was trained on states of "
                f"{meta.get('lm')}, but gate.lm is {lm}; set gate.lm to it, or retrain with "
                "`moe gate train`"
            )
        self.lm = LMStates(lm, int(meta["layer"]), where="gate.lm", cache_dir=cache_dir)
        self.consult_below = float(meta["consult_below"])
        self.chars = TfidfFeatures(arrays, prefix="char_")
        self.coef_embedding = arrays[f"{PREFIX}coef_embedding"].T.astype(np.float32)
        self.coef_words = np.ascontiguousarray(arrays[f"{PREFIX}coef_words"].T)
        self.coef_chars = np.ascontiguousarray(arrays[f"{PREFIX}coef_chars"].T)
        self.coef_lm = arrays[f"{PREFIX}coef_lm"].astype(np.float32)
        self.bias = arrays[f"{PREFIX}intercept"]
        self.temperature = float(arrays[f"{PREFIX}temperature"])

    def probabilities(
        self,
        embedding: np.ndarray,
        words: tuple[np.ndarray, np.ndarray],
        text: str,
        state: np.ndarray,
    ) -> np.ndarray:
        """Each label's probability for one query.

        :param words: the query's word tf-idf (indices, weights), as the first model has them.
        :param state: the query's language-model state (:meth:`LMStates.encode`).
        """
        word_indices, word_weights = words
        char_indices, char_weights = self.chars(text)
        logits = (
            embedding @ self.coef_embedding
            + word_weights @ self.coef_words[word_indices]
            + char_weights @ self.coef_chars[char_indices]
            + state @ self.coef_lm
            + self.bias
        )
        logits = np.exp((logits - logits.max()) / self.temperature)
        return logits / logits.sum()
