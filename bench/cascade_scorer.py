"""Offline quality of a cascade's escalation scorer on GSM8K (``make bench-combiners``).

A cascade answers with a cheap model first and escalates to a strong one when a scorer, which
sees the question and the cheap model's answer, says the answer is probably wrong. This measures
such a scorer on RouteLLM's published answers of Mixtral-8x7B (weak) and GPT-4 (strong) to the
GSM8K test set (``../shared/data/routellm/gsm8k``), contaminated prompts dropped:

- features of the weak answer: TF-IDF of its words, whether its calculator annotations
  (``<<6*4=24>>``) are arithmetically right, whether it reaches a ``#### <number>`` answer and
  whether that number is a whole number, hedging and self-correction words, lengths and counts;
- a logistic regression, trained and scored with 5-fold cross-validation on fixed folds (every
  prompt is scored by a model that never saw it);
- the escalation share swept from 0% to 100%; APGR is the area under the performance-gap-
  recovered curve (always-weak 0, always-strong 1), printed beside random and oracle routing.

The ``cascade`` combiner's built-in ``answer-check`` scorer uses the same signals with fixed
weights and no training; this measures what learning their weights (and the answer's words) gives.
Writes ``bench/results/cascade_scorer.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from results_io import write_results

from moe_core.answers import answer_check
from moe_core.models import ExpertResult
from moe_domain_llms import artefacts
from moe_domain_llms.answer_quality import KIND, AnswerQualityModel, fit
from moe_domain_llms.routing_metrics import apgr, oracle_scores, random_apgr

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm" / "gsm8k"
RESULTS = Path(__file__).parent / "results" / "cascade_scorer.json"
PUBLISHED_BEST = 0.622  # RouteLLM's best prompt-only router on GSM8K (arXiv 2406.18665)


def load(data: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    contaminated = {
        json.loads(line)["eval_prompt"]
        for line in (data / "contaminated_prompts.jsonl").read_text().splitlines()
        if line.strip()
    }
    with (data / "gsm8k_responses.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["prompt"] not in contaminated]
    weak_name, strong_name = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    return (
        [row["prompt"] for row in rows],
        [row[f"{weak_name}_response"] for row in rows],
        np.array([row[weak_name] == "True" for row in rows]),
        np.array([row[strong_name] == "True" for row in rows]),
    )


def cross_validated_scores(
    questions: list[str], answers: list[str], wrong: np.ndarray, folds: int
) -> np.ndarray:
    """P(wrong) for every answer from the shipped scorer's own code (``fit``, then the model the
    ``answer-quality`` scorer runs), trained on the other folds."""
    from sklearn.model_selection import KFold

    scores = np.zeros(len(answers))
    for train, test in KFold(folds, shuffle=True, random_state=0).split(answers):
        arrays = fit([questions[i] for i in train], [answers[i] for i in train], wrong[train])
        model = AnswerQualityModel(arrays)
        scores[test] = [model.p_wrong(questions[i], answers[i]) for i in test]
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--write-artefact", type=Path, help="also train on every prompt and save the scorer here"
    )
    args = parser.parse_args()
    if not (args.data / "gsm8k_responses.csv").is_file():
        print(f"cascade_scorer: no GSM8K data at {args.data}", file=sys.stderr)
        return 2
    questions, answers, weak, strong = load(args.data)
    scores = cross_validated_scores(questions, answers, ~weak, args.folds)
    random = random_apgr(weak, strong)
    oracle = apgr(oracle_scores(weak, strong), weak, strong)
    ours = apgr(scores, weak, strong)
    heuristic = apgr(
        np.array([answer_check(ExpertResult(content=a)) for a in answers]), weak, strong
    )
    report = {
        "prompts": len(weak),
        "weak_accuracy": round(float(weak.mean()), 4),
        "strong_accuracy": round(float(strong.mean()), 4),
        "folds": args.folds,
        "apgr": {
            "scorer": round(ours, 4),
            "answer_check_heuristic": round(heuristic, 4),
            "random": round(random, 4),
            "oracle": round(oracle, 4),
            "published_best": PUBLISHED_BEST,
        },
        "bar": {
            "bar": f"scorer APGR > {PUBLISHED_BEST}",
            "value": round(ours, 4),
            "result": "PASS" if ours > PUBLISHED_BEST else "FAIL",
        },
    }
    print(
        f"GSM8K, {len(weak)} prompts (contaminated dropped); weak {weak.mean():.3f}, "
        f"strong {strong.mean():.3f} accurate"
    )
    print(
        f"APGR  escalation scorer ({args.folds}-fold CV) {ours:.3f}   random {random:.3f}   "
        f"oracle {oracle:.3f}   published best {PUBLISHED_BEST}"
    )
    print(f"      the cascade's untrained answer-check scorer {heuristic:.3f}")
    print(f"  {report['bar']['result']}  {report['bar']['bar']}  (measured: {ours:.3f})")
    write_results(report, args.out)
    if args.write_artefact:
        arrays = fit(questions, answers, ~weak)
        artefacts.save(
            args.write_artefact,
            KIND,
            ["wrong"],
            arrays,
            data="RouteLLM gsm8k_responses.csv (Mixtral-8x7B answers, GPT-4 as reference)",
            license="Apache-2.0 (lm-sys/RouteLLM)",
            train_rows=len(answers),
            cross_validated_apgr=round(ours, 4),
        )
        print(f"wrote {args.write_artefact}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
