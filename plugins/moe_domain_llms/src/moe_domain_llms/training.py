"""Training the learned gates from a CSV of labelled queries (``query,label,split``).

Only rows marked ``train`` are fitted; rows marked ``test`` are a fixed held-out split used for
the report alone, so the figures printed are what the gate does on queries it never saw. The
embedding gate also holds back a validation slice of the train rows, for the choices training
makes itself (the fine-tuning epoch, the calibration temperature).
scikit-learn is imported here and nowhere on the routing path.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moe_core import ConfigError
from moe_domain_llms import artefacts
from moe_domain_llms.embeddings import Encoder
from moe_domain_llms.finetune import Finetuned, FinetuneSettings
from moe_domain_llms.second_opinion import SecondOpinionSettings

# What the embedding gate routes with by default; the training report routes the same way.
# Below this top probability the gate abstains to `general`. Checked on the validation slice of
# the train split (1,137 rows): 0.4 instead took in-domain errors from 37 to 34 with 7,581 train
# rows and from 36 to 31 with 10,412 (each for 2 or 3 more out-of-domain errors), but with the
# 11,454 rows of the shipped artefact and its layer-20 second opinion both gave 28, and 0.4 one
# more out-of-domain error (15 against 14), so 0.5 stays.
DEFAULT_THRESHOLD = 0.5


@dataclass
class Dataset:
    """Labelled queries. ``styles`` says what kind of text each row is (the optional ``style``
    column, "" where absent): training ignores it; benchmarks report held-out rows by it."""

    texts: list[str]
    labels: list[str]
    splits: list[str]
    sha256: str
    path: Path
    styles: list[str]

    def part(self, split: str) -> tuple[list[str], list[str]]:
        rows = [
            (t, y)
            for t, y, s in zip(self.texts, self.labels, self.splits, strict=True)
            if s == split
        ]
        return [t for t, _ in rows], [y for _, y in rows]


def load_dataset(path: Path) -> Dataset:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read training data {path}: {exc.strerror}") from None
    reader = csv.DictReader(raw.decode("utf-8").splitlines())
    if not reader.fieldnames or not {"query", "label"} <= set(reader.fieldnames):
        raise ConfigError(f"{path}: expected a CSV with columns query,label[,split][,style]")
    texts, labels, splits, styles = [], [], [], []
    for line, row in enumerate(reader, start=2):
        if not (row.get("query") or "").strip() or not (row.get("label") or "").strip():
            raise ConfigError(f"{path}:{line}: empty query or label")
        texts.append(row["query"].strip())
        labels.append(row["label"].strip())
        splits.append((row.get("split") or "train").strip())
        styles.append((row.get("style") or "").strip())
    dataset = Dataset(texts, labels, splits, hashlib.sha256(raw).hexdigest(), path, styles)
    if len(set(dataset.part("train")[1])) < 2:
        raise ConfigError(f"{path}: the train split needs at least two labels")
    return dataset


def evaluate(
    truth: list[str], predicted: list[str], labels: list[str], abstain_to: str = "general"
) -> dict[str, Any]:
    """Accuracy, per-label precision/recall/F1, the confusion matrix, and the two figures that
    matter for routing: in-domain accuracy and how much of everything else reaches general."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    in_domain = [(t, p) for t, p in zip(truth, predicted, strict=True) if t != abstain_to]
    outside = [p for t, p in zip(truth, predicted, strict=True) if t == abstain_to]
    return {
        "n": len(truth),
        "accuracy": round(
            float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)])), 4
        ),
        "in_domain_accuracy": round(float(np.mean([t == p for t, p in in_domain])), 4)
        if in_domain
        else None,
        "out_of_domain_to_general": round(float(np.mean([p == abstain_to for p in outside])), 4)
        if outside
        else None,
        "per_label": {
            label: {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "f1": round(float(f), 4),
                "support": int(s),
            }
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "labels": labels,
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
    }


def format_report(title: str, metrics: dict[str, Any]) -> str:
    """The metrics as a table a person can read in a terminal."""
    labels = metrics["labels"]
    width = max(12, *(len(label) + 2 for label in labels))
    lines = [title, f"  held-out queries: {metrics['n']}, accuracy {metrics['accuracy']:.3f}"]
    if metrics.get("in_domain_accuracy") is not None:
        lines.append(f"  in-domain accuracy: {metrics['in_domain_accuracy']:.3f}")
    if metrics.get("out_of_domain_to_general") is not None:
        lines.append(
            f"  out-of-domain routed to general: {metrics['out_of_domain_to_general']:.3f}"
        )
    lines.append(f"  {'label':<{width}} precision  recall     f1  support")
    for label, row in metrics["per_label"].items():
        lines.append(
            f"  {label:<{width}} {row['precision']:>9.3f} {row['recall']:>7.3f} "
            f"{row['f1']:>6.3f} {row['support']:>8}"
        )
    lines.append("  confusion (rows: truth, columns: predicted)")
    lines.append("  " + " " * width + "".join(f"{label[:10]:>11}" for label in labels))
    for label, row in zip(labels, metrics["confusion"], strict=True):
        lines.append(f"  {label:<{width}}" + "".join(f"{count:>11}" for count in row))
    return "\n".join(lines)


def _progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def _tfidf_arrays(vectorizer: Any, prefix: str = "tfidf_") -> dict[str, np.ndarray]:
    """What :class:`moe_domain_llms.gates.TfidfFeatures` needs to repeat the transform."""
    terms = np.empty(len(vectorizer.vocabulary_), dtype=object)
    for term, index in vectorizer.vocabulary_.items():
        terms[index] = term
    arrays = {
        "terms": terms.astype(str),
        "stop_words": np.array(sorted(vectorizer.get_stop_words() or ()), dtype=str),
        "idf": vectorizer.idf_,
        "sublinear": np.array(vectorizer.sublinear_tf),
    }
    if vectorizer.analyzer != "word":
        arrays["analyzer"] = np.array(vectorizer.analyzer)
        arrays["ngram_range"] = np.array(vectorizer.ngram_range)
    return {f"{prefix}{name}": value for name, value in arrays.items()}


def train_tfidf_nb(data: Path, output: Path, *, progress: bool = True) -> dict[str, Any]:
    """Fits in well under a second, so there is no progress bar to show."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB

    dataset = load_dataset(data)
    texts, labels = dataset.part("train")
    vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2))
    classifier = MultinomialNB().fit(vectorizer.fit_transform(texts), labels)
    test_texts, test_labels = dataset.part("test")
    classes = [str(c) for c in classifier.classes_]
    predicted = list(classifier.predict(vectorizer.transform(test_texts))) if test_texts else []
    metrics = evaluate(test_labels, predicted, classes) if test_texts else {}
    artefacts.save(
        output,
        "tfidf-nb",
        classes,
        {
            **_tfidf_arrays(vectorizer),
            "feature_log_prob": classifier.feature_log_prob_,
            "class_log_prior": classifier.class_log_prior_,
        },
        data=str(data.name),
        data_sha256=dataset.sha256,
        train_rows=len(texts),
        metrics=metrics,
    )
    return {
        "kind": "tfidf-nb",
        "artefact": str(output),
        "metrics": metrics,
        "report": (
            format_report(f"tfidf-nb gate -> {output}", metrics)
            if metrics
            else f"tfidf-nb gate -> {output} (no test rows to report on)"
        ),
    }


# The sentence embedding enters the classifiers scaled by this factor, so the one L2 penalty
# weighs it against the term features: at 0.5 (with C=30) the classifier leans more on domain
# jargon the encoder has rarely seen. Chosen by 5-fold cross-validation on the train rows alone
# for the frozen encoder. The scale is folded into the saved coefficients, so routing multiplies
# the raw embedding as before.
EMBEDDING_SCALE = 0.5
# The same for an encoder adapted to the labels. The adapter learned from the very rows the
# classifiers are fitted on, so on those rows its embeddings separate the labels better than they
# will on new queries, and a classifier fitted there trusts them too much. Chosen on the
# validation slice (1,090 rows no part of training saw) with the shipped adapter: at 0.5 the
# first model made 79 errors and the cascade with the second opinion 64; at 0.1, 75 and 50
# (in-domain 0.948 to 0.955, out-of-domain to general 0.925 to 0.951). 0.07 and 0.15 gave 51
# and 53 and 0.05 worse, so 0.1 is no narrow peak.
ADAPTED_EMBEDDING_SCALE = 0.1
REGULARISATION_C = 30.0
# The share of the train rows held back from fitting (stratified, fixed seed): it picks the
# fine-tuning epoch, fits the calibration temperature and gives validation figures. Rows the
# encoder or the classifier learned from would make both look better than they are.
VALIDATION_SHARE = 0.15


def train_embedding(
    data: Path,
    output: Path,
    encoder: Encoder,
    *,
    progress: bool = True,
    finetune: FinetuneSettings | None = None,
    second_opinion: SecondOpinionSettings | None = None,
    reuse_adapter: Path | None = None,
) -> dict[str, Any]:
    """Optionally a LoRA-adapted encoder; then its sentence embeddings joined by TF-IDF term
    features, and a logistic regression with a calibrated temperature.

    :param finetune: how to adapt the encoder to the labels first (None: the frozen encoder).
    :param second_opinion: how to fit the model consulted for unsure queries
        (:mod:`moe_domain_llms.second_opinion`; None: the first model decides alone).
    :param reuse_adapter: an embedding artefact whose adapter to merge instead of fine-tuning
        (:func:`reused_adapter`); ``finetune`` is then ignored.
    """
    import scipy.sparse as sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    dataset = load_dataset(data)
    train_texts, train_labels = dataset.part("train")
    classes = sorted(set(train_labels))
    fit_texts, val_texts, fit_labels, val_labels = train_test_split(
        train_texts,
        train_labels,
        # At least one row of each label, so that small data sets still split.
        test_size=max(round(VALIDATION_SHARE * len(train_texts)), len(classes)),
        stratify=train_labels,
        random_state=0,
    )
    test_texts, test_labels = dataset.part("test")
    encoder.load()
    adapter: Finetuned | None = None
    if reuse_adapter is not None:
        adapter = reused_adapter(reuse_adapter)
        encoder.adapt(adapter.arrays, adapter.meta["base_fingerprint"], where="gate.reuse_adapter")
    elif finetune is not None and finetune.epochs > 0:
        from moe_domain_llms.embeddings import MAX_TOKENS
        from moe_domain_llms.finetune import train_adapter

        index = {label: i for i, label in enumerate(classes)}
        adapter = train_adapter(
            encoder.model,
            encoder.tokenizer,
            fit_texts,
            [index[label] for label in fit_labels],
            len(classes),
            finetune,
            max_tokens=MAX_TOKENS,
            progress=lambda items, **kw: _progress(items, progress, unit="batch", **kw),
            validation=(val_texts, [index[label] for label in val_labels]),
        )
        # The rounded (fp16) adapter, merged as routing will merge it: what the classifier
        # learns from below is exactly what the gate will compute.
        encoder.adapt(adapter.arrays, adapter.meta["base_fingerprint"], where="training")
    everything = [*fit_texts, *val_texts, *test_texts]
    batches = range(0, len(everything), 64)
    vectors = np.concatenate(
        [
            encoder.encode(everything[start : start + 64])
            for start in _progress(batches, progress, desc="embedding queries", unit="batch")
        ]
    )
    fit_rows, val_rows = slice(0, len(fit_texts)), slice(len(fit_texts), len(train_texts))
    test_rows = slice(len(train_texts), len(everything))
    # Term features beside the embedding: jargon the encoder has rarely seen still counts.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(fit_texts)
    words = vectorizer.transform(everything)
    scale = EMBEDDING_SCALE if adapter is None else ADAPTED_EMBEDDING_SCALE
    features = sparse.hstack([sparse.csr_matrix(vectors * scale), words]).tocsr()
    classifier = LogisticRegression(C=REGULARISATION_C, max_iter=5000)
    classifier.fit(features[fit_rows], fit_labels)
    assert [str(c) for c in classifier.classes_] == classes
    # Held-out logits fix the temperature that calibrates probabilities.
    logits = classifier.decision_function(features)
    temperature = _fit_temperature(logits[val_rows], np.array(val_labels), classes)
    first = np.exp((logits - logits.max(axis=1, keepdims=True)) / temperature)
    first /= first.sum(axis=1, keepdims=True)
    extra: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    if adapter is not None:
        arrays.update(adapter.arrays)
        extra["adapter"] = adapter.meta
    probabilities = first
    if second_opinion is not None:
        from moe_domain_llms.second_opinion import fit_second_opinion

        second = fit_second_opinion(
            second_opinion,
            everything,
            vectors,
            words,
            fit_rows,
            val_rows,
            fit_labels,
            val_labels,
            classes,
            embedding_scale=scale,
            regularisation=REGULARISATION_C,
            progress=lambda items, **kw: _progress(items, progress, **kw),
        )
        # Routing's cascade: the second model decides where the first is unsure.
        consulted = first.max(axis=1) < second_opinion.consult_below
        probabilities = np.where(consulted[:, None], second.probabilities, first)
        second.meta["validation_consulted"] = round(float(consulted[val_rows].mean()), 4)
        second.meta["validation_metrics_first_model"] = evaluate(
            val_labels, _routed(first[val_rows], classes), classes
        )
        arrays.update(second.arrays)
        extra["second_opinion"] = second.meta

    validation = evaluate(val_labels, _routed(probabilities[val_rows], classes), classes)
    metrics = (
        evaluate(test_labels, _routed(probabilities[test_rows], classes), classes)
        if test_texts
        else {}
    )
    width = vectors.shape[1]
    artefacts.save(
        output,
        "embedding",
        classes,
        {
            "coef_embedding": classifier.coef_[:, :width] * scale,
            "coef_terms": classifier.coef_[:, width:],
            "intercept": classifier.intercept_,
            "temperature": np.array(temperature),
            **_tfidf_arrays(vectorizer),
            **arrays,
        },
        encoder=encoder.identity,
        data=str(data.name),
        data_sha256=dataset.sha256,
        train_rows=len(train_texts),
        embedding_scale=scale,
        validation_rows=len(val_texts),
        validation_metrics=validation,
        metrics=metrics,
        **extra,
    )
    how = "LoRA-adapted encoder" if adapter is not None else "frozen encoder"
    if reuse_adapter is not None:
        how += f" (adapter reused from {reuse_adapter.name})"
    if "second_opinion" in extra:
        opinion = extra["second_opinion"]
        how += (
            f", second opinion from {opinion['lm']} layer {opinion['layer']} below "
            f"p={opinion['consult_below']:.2f}: {opinion['validation_consulted']:.1%} of the "
            "validation slice consulted"
        )
    title = f"embedding gate ({how}) -> {output} (calibration temperature {temperature:.3f})"
    report = [
        format_report(f"{title}\nvalidation slice of the train split", validation),
    ]
    if metrics:
        report.append(format_report("held-out test split", metrics))
    return {
        "kind": "embedding",
        "artefact": str(output),
        "metrics": metrics,
        "validation_metrics": validation,
        "temperature": round(temperature, 4),
        "adapter": extra.get("adapter"),
        "second_opinion": extra.get("second_opinion"),
        "report": "\n".join(report),
    }


def reused_adapter(path: Path) -> Finetuned:
    """The encoder adapter of an earlier embedding artefact, to refit the classifiers on new
    rows without fine-tuning again (which takes the better part of an hour on two busy cores).

    The adapter learned from that artefact's fit rows, and some of them fall in this training's
    validation slice: the slice's figures (and the temperatures fitted on it) are then somewhat
    optimistic. The held-out ``test`` rows were never fitted by either, so their figures are not.
    The metadata records where the adapter came from.
    """
    from moe_domain_llms.finetune import ADAPTER_FORMAT

    previous = artefacts.load(path, "embedding", where="gate.reuse_adapter")
    meta = previous.meta.get("adapter") or {}
    if meta.get("format") != ADAPTER_FORMAT or "lora_a" not in previous.arrays:
        raise ConfigError(
            f"gate.reuse_adapter: {path} holds no encoder adapter of format {ADAPTER_FORMAT}"
        )
    arrays = {name: a for name, a in previous.arrays.items() if name.startswith("lora_")}
    origin = {
        "artefact": path.name,
        "data_sha256": previous.meta.get("data_sha256"),
        "train_rows": previous.meta.get("train_rows"),
    }
    return Finetuned(arrays, {**meta, "reused_from": origin})


def _routed(probabilities: np.ndarray, classes: list[str]) -> list[str]:
    """Labels as the gate routes with its default threshold (abstaining to general)."""
    best = probabilities.argmax(axis=1)
    return [
        classes[b] if p[b] >= DEFAULT_THRESHOLD or "general" not in classes else "general"
        for b, p in zip(best, probabilities, strict=True)
    ]


def _fit_temperature(logits: np.ndarray, truth: np.ndarray, classes: list[str]) -> float:
    """The temperature minimising the negative log-likelihood of held-out logits."""
    index = {label: i for i, label in enumerate(classes)}
    targets = np.array([index[label] for label in truth])
    best, best_nll = 1.0, float("inf")
    for temperature in np.geomspace(0.05, 20, 200):
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        nll = -log_probs[np.arange(len(targets)), targets].mean()
        if nll < best_nll:
            best, best_nll = float(temperature), nll
    return best
