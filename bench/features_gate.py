"""The ``features`` gate on held-out inputs (``make bench-features``).

The held-out set (``moe_byt5/data/features_heldout.json``) was written by hand, separately from
the generated training rows: short code, identifiers, symbol-heavy text, error messages,
byte-level jobs and binary junk (label ``byt5``) against long prose documents (``longformer``).
Each input is routed by the real gate through the pipeline (``MoE.route``), and scored against
baselines measured in the same run:

- ``seed_untrained_mlp``: the seed's gate, a 5-128-64-2 network over its five features, never
  trained (random weights; mean and spread over 20 initialisations);
- ``random``: a fair coin per input (expected accuracy over 1,000 draws);
- ``majority``: always the more common label.

Also: Brier score and mean confidence (calibration), and microseconds per routing decision.
Writes ``bench/results/features_gate.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path

import numpy as np
from results_io import write_results

from moe_byt5 import features
from moe_byt5.gate import DEFAULT_DATA
from moe_core.models import ChatRequest
from moe_core.testing import make_moe

HELDOUT = DEFAULT_DATA.with_name("features_heldout.json")
RESULTS = Path(__file__).parent / "results" / "features_gate.json"
EXPERTS = {"byt5": "moe-expert-byt5", "longformer": "moe-expert-longformer"}
LABELS = sorted(EXPERTS)


def per_class(truth: list[str], predicted: list[str]) -> dict:
    report = {}
    for label in LABELS:
        tp = sum(t == p == label for t, p in zip(truth, predicted, strict=True))
        guessed = predicted.count(label)
        actual = truth.count(label)
        report[label] = {
            "precision": round(tp / guessed, 4) if guessed else 0.0,
            "recall": round(tp / actual, 4) if actual else 0.0,
            "support": actual,
        }
    return report


def accuracy(truth: list[str], predicted: list[str]) -> float:
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)


def seed_untrained_mlp(texts: list[str], seed: int) -> list[str]:
    """The seed's gate: its five features, normalised as it did, through an untrained MLP."""
    rng = np.random.default_rng(seed)

    def layer(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        bound = 1 / math.sqrt(n_in)  # torch.nn.Linear's default initialisation
        return rng.uniform(-bound, bound, (n_in, n_out)), rng.uniform(-bound, bound, n_out)

    (w1, b1), (w2, b2), (w3, b3) = layer(5, 128), layer(128, 64), layer(64, 2)
    predicted = []
    for text in texts:
        f = features.extract(text)
        x = np.array(
            [
                f["length"] / 1000,
                f["avg_word_length"] / 10,
                f["special_char_ratio"],
                f["uppercase_ratio"],
                f["is_binary"],
            ]
        )
        h = np.maximum(0, np.maximum(0, x @ w1 + b1) @ w2 + b2)
        predicted.append(LABELS[int(np.argmax(h @ w3 + b3))])
    return predicted


async def route_all(texts: list[str]) -> tuple[list[str], list[float], list[dict], float]:
    config = {
        "experts": {name: {"kind": "echo"} for name in EXPERTS.values()},
        "gate": {"kind": "features", "experts": EXPERTS},
    }
    labels = {expert: label for label, expert in EXPERTS.items()}
    async with make_moe(config) as moe:
        requests = [ChatRequest(messages=[{"role": "user", "content": t}]) for t in texts]
        started = time.perf_counter()
        decisions = [await moe.route(request) for request in requests]
        seconds = time.perf_counter() - started
    predicted = [labels[d.experts[0]] for d in decisions]
    confidence = [float(d.confidence or 0.0) for d in decisions]
    scores = [{labels[EXPERTS[k]]: v for k, v in d.scores.items()} for d in decisions]
    return predicted, confidence, scores, seconds * 1e6 / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rows = json.loads(HELDOUT.read_text("utf-8"))["rows"]
    texts, truth = [row["text"] for row in rows], [row["label"] for row in rows]
    predicted, confidence, scores, micros = asyncio.run(route_all(texts))
    gate_accuracy = accuracy(truth, predicted)
    brier = float(np.mean([(1.0 - s[t]) ** 2 for s, t in zip(scores, truth, strict=True)]))
    right = [c for c, t, p in zip(confidence, truth, predicted, strict=True) if t == p]
    wrong = [c for c, t, p in zip(confidence, truth, predicted, strict=True) if t != p]

    mlp = [accuracy(truth, seed_untrained_mlp(texts, seed)) for seed in range(20)]
    coin = np.random.default_rng(0).integers(0, 2, (1000, len(texts)))
    random_accuracy = float(np.mean([accuracy(truth, [LABELS[i] for i in draw]) for draw in coin]))
    majority = max(LABELS, key=truth.count)
    majority_accuracy = truth.count(majority) / len(truth)

    misrouted = [
        {"text": t[:80], "label": t_, "routed": p, "confidence": round(c, 3)}
        for t, t_, p, c in zip(texts, truth, predicted, confidence, strict=True)
        if t_ != p
    ]
    report = {
        "heldout_rows": len(rows),
        "counts": {label: truth.count(label) for label in LABELS},
        "gate": {
            "accuracy": round(gate_accuracy, 4),
            "per_class": per_class(truth, predicted),
            "brier_score": round(brier, 4),
            "mean_confidence_correct": round(float(np.mean(right)), 4) if right else None,
            "mean_confidence_wrong": round(float(np.mean(wrong)), 4) if wrong else None,
            "microseconds_per_decision": round(micros, 1),
            "misrouted": misrouted,
        },
        "baselines": {
            "seed_untrained_mlp": {
                "accuracy_mean": round(float(np.mean(mlp)), 4),
                "accuracy_min": round(min(mlp), 4),
                "accuracy_max": round(max(mlp), 4),
                "initialisations": len(mlp),
            },
            "random": {"accuracy": round(random_accuracy, 4)},
            "majority": {"label": majority, "accuracy": round(majority_accuracy, 4)},
        },
        "ratio_vs_seed_untrained_mlp": round(gate_accuracy / float(np.mean(mlp)), 3),
        "ratio_vs_random": round(gate_accuracy / random_accuracy, 3),
        "bar": {"accuracy_at_least": 0.95, "met": gate_accuracy >= 0.95},
    }
    print(f"features gate on {len(rows)} held-out inputs {report['counts']}")
    verdict = "met" if gate_accuracy >= 0.95 else "NOT met"
    print(f"  accuracy {gate_accuracy:.3f}  (bar 0.95: {verdict})")
    for label, figures in report["gate"]["per_class"].items():
        print(
            f"  {label:<11} precision {figures['precision']:.3f}  recall {figures['recall']:.3f}"
            f"  (n={figures['support']})"
        )
    print(f"  Brier score {brier:.4f}; {micros:.0f} µs per decision")
    print(
        f"baselines: seed's untrained MLP {np.mean(mlp):.3f} (min {min(mlp):.3f}, max "
        f"{max(mlp):.3f}), random {random_accuracy:.3f}, majority ({majority}) "
        f"{majority_accuracy:.3f}"
    )
    print(
        f"ratio: {report['ratio_vs_seed_untrained_mlp']}x the seed's gate, "
        f"{report['ratio_vs_random']}x random"
    )
    for miss in misrouted:
        print(f"  misrouted: {miss}")
    write_results(report, args.out)


if __name__ == "__main__":
    main()
