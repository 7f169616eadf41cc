"""The trained input-feature classifier: standardise, a linear layer, temperature-scaled softmax.

Training (scikit-learn logistic regression, then a temperature fitted on a validation split so
probabilities mean what they say) lives in :func:`train`; routing is these few numpy operations
on the arrays the artefact holds.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from moe_byt5 import artefact, features


class FeatureClassifier:
    """Label probabilities for one input, from a trained artefact."""

    def __init__(self, model: artefact.Artefact) -> None:
        names = model.meta.get("features")
        if names != list(features.NAMES):
            raise ValueError(
                f"it was trained on features {names}, this version computes {list(features.NAMES)}"
            )
        self.labels = model.labels
        arrays = model.arrays
        self.mean = arrays["mean"]
        self.scale = arrays["scale"]
        self.coef = arrays["coef"]  # (labels, features)
        self.intercept = arrays["intercept"]
        self.temperature = float(arrays["temperature"])
        self.meta = model.meta

    def probabilities(self, values: dict[str, float]) -> np.ndarray:
        x = (np.asarray(features.vector(values)) - self.mean) / self.scale
        return softmax((self.coef @ x + self.intercept) / self.temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def read_rows(path: Path) -> list[tuple[str, str]]:
    """``text,label`` rows of a CSV file."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path} must have the columns text,label")
        return [(row["text"], row["label"]) for row in reader]


def matrix(texts: list[str]) -> np.ndarray:
    return np.array([features.vector(features.extract(text)) for text in texts])


def train(data: Path, output: Path, *, seed: int = 0) -> dict[str, Any]:
    """Fit on ``data``, write the artefact to ``output``, return metrics and a report."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    rows = read_rows(data)
    texts, labels = [text for text, _ in rows], [label for _, label in rows]
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError(f"{data} has only the label(s) {names}; at least two are needed")
    x = matrix(texts)
    y = np.array([names.index(label) for label in labels])
    x_fit, x_val, y_fit, y_val = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    mean, scale = x_fit.mean(axis=0), x_fit.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    model.fit((x_fit - mean) / scale, y_fit)
    coef, intercept = model.coef_, model.intercept_
    if len(names) == 2:  # scikit-learn keeps one row for two classes: logits (0, z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    val_logits = ((x_val - mean) / scale) @ coef.T + intercept
    temperature = _fit_temperature(val_logits, y_val)
    probabilities = softmax(val_logits / temperature)
    accuracy = float((probabilities.argmax(axis=1) == y_val).mean())
    log_loss = float(-np.log(probabilities[np.arange(len(y_val)), y_val] + 1e-12).mean())
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:16]
    metrics = {
        "rows": len(rows),
        "validation_rows": len(y_val),
        "validation_accuracy": round(accuracy, 4),
        "validation_log_loss": round(log_loss, 4),
        "temperature": round(temperature, 4),
        "counts": {name: labels.count(name) for name in names},
    }
    artefact.save(
        output,
        names,
        {
            "mean": mean,
            "scale": scale,
            "coef": coef,
            "intercept": intercept,
            "temperature": np.array(temperature),
        },
        features=list(features.NAMES),
        data=str(data.name),
        data_sha256=digest,
        metrics=metrics,
    )
    weights = ", ".join(
        f"{name}={weight:+.2f}"
        for name, weight in zip(features.NAMES, coef[-1] - coef[0], strict=True)
    )
    report = (
        f"trained features gate on {len(rows)} rows ({metrics['counts']}) -> {output}\n"
        f"validation accuracy {accuracy:.3f}, log loss {log_loss:.3f}, temperature "
        f"{temperature:.2f}\nweights toward {names[-1]}: {weights}"
    )
    return {"report": report, "artefact": str(output), **metrics}


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising validation log loss (a coarse grid is plenty for one scalar).

    It only ever softens (>= 1): when the validation split is separated perfectly, log loss
    keeps falling as the temperature shrinks, and a sharper model would claim a certainty that
    inputs unlike the training rows need not bear out; the regularised regression's own
    probabilities are the most confident we allow."""
    best, best_loss = 1.0, float("inf")
    for temperature in np.exp(np.linspace(0.0, np.log(20), 100)):
        p = softmax(logits / temperature)
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        if loss < best_loss:
            best, best_loss = float(temperature), loss
    return best
