"""Routing quality of the prompt-only quality-vs-cost predictor on RouteLLM's data
(``make bench-routing``).

RouteLLM published, per prompt, whether Mixtral-8x7B (weak) and GPT-4 (strong) answered MMLU and
GSM8K correctly (``../shared/data/routellm``; contaminated prompts dropped, as RouteLLM does).
The ``quality-cost`` gate's predictor (``moe_domain_llms.quality``) is trained and scored with
cross-validation, so every prompt is ranked by a model that never saw it:

- MMLU: leave-subjects-out; the 57 subjects, sorted by name, are dealt round-robin into 5 fixed
  groups and each group is held out in turn (the router never sees a test subject);
- GSM8K: 5 folds, fixed (shuffled with seed 0).

Everything fitted (feature scaling, the weights of the members fitted at each regularisation
strength and averaged, the calibrated threshold) is fitted inside each training fold; on MMLU the
inner folds that calibrate also hold out whole subjects, as the outer ones do.
Reported: APGR (area under the performance-gap-recovered curve, always-weak 0,
always-strong 1), CPT(50%) (the strong-call share that recovers half the gap), and how close a
threshold calibrated on the training fold to a 50% strong share comes to 50% on the held-out
fold; random and oracle routing beside them (the oracle reads the answers: a reference line).
``--regroupings N`` also scores the headline router on MMLU under N other random groupings of
the subjects, to show how much of the figure is the fixed grouping's.
Three routers are scored: prompt features alone; with the MiniLM embedding of the whole prompt
(the design before this one); and the gate's design, with MiniLM embeddings of the question stem
and of the answer options and SmolLM2-135M's layer-18 states. That design was chosen among some
60 candidates by inner cross-validation on the training subjects of each outer fold (inner folds
holding out subjects too), never on the outer folds or the other groupings;
``bench/routing_selection.md`` lists every candidate with its inner figure.
Block vectors are cached under ``bench/.cache/``: only the first run computes them for the 15k
prompts (the slow part on a small CPU: the SmolLM2 states alone take some 40 minutes on two
lightly shared cores, more on busy ones).
Writes ``bench/results/routing.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from results_io import write_results

from moe_domain_llms import quality
from moe_domain_llms.routing_metrics import apgr, cpt, oracle_scores, random_apgr

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm"
CACHE = Path(__file__).parent / ".cache" / "routing"
RESULTS = Path(__file__).parent / "results" / "routing.json"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
PUBLISHED_BEST = {"mmlu": 0.603, "gsm8k": 0.622}  # arXiv 2406.18665, best prompt-only router
GROUPS = 5


def contaminated(folder: Path) -> set[str]:
    lines = (folder / "contaminated_prompts.jsonl").read_text().splitlines()
    return {json.loads(line)["eval_prompt"] for line in lines if line.strip()}


def load_mmlu(data: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    drop = contaminated(data / "mmlu")
    texts, subjects, weak, strong = [], [], [], []
    for path in sorted((data / "mmlu" / "responses").glob("mmlu_*.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["prompt"] in drop:
                    continue
                texts.append(row["prompt"])
                subjects.append(path.stem.removeprefix("mmlu_"))
                weak.append(row[WEAK] == "True")
                strong.append(row[STRONG] == "True")
    return texts, subjects, np.array(weak), np.array(strong)


def load_gsm8k(data: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    drop = contaminated(data / "gsm8k")
    with (data / "gsm8k" / "gsm8k_responses.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["prompt"] not in drop]
    return (
        [row["prompt"] for row in rows],
        np.array([row[WEAK] == "True" for row in rows]),
        np.array([row[STRONG] == "True" for row in rows]),
    )


def subject_folds(
    subjects: list[str], seed: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Leave-subjects-out: sorted subjects dealt round-robin into fixed groups (or, with a
    seed, shuffled first: another grouping, to see how much the grouping alone moves APGR)."""
    names = sorted(set(subjects))
    if seed is not None:
        names = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    group_of = {subject: i % GROUPS for i, subject in enumerate(names)}
    groups = np.array([group_of[subject] for subject in subjects])
    return [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in range(GROUPS)]


def fixed_folds(n: int, folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    return list(KFold(folds, shuffle=True, random_state=0).split(np.arange(n)))


def vectors_for(name: str, texts: list[str], blocks: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each block's vectors (:func:`moe_domain_llms.quality.prompt_vectors`: MiniLM embeddings,
    SmolLM2 states), computed once and cached by the texts' hash."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    vectors = {}
    for block in blocks:
        path = CACHE / f"{name}-{block}-{digest}.npy"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, _compute(name, texts, block))
        vectors[block] = np.load(path)
    return vectors


def _compute(name: str, texts: list[str], block: str) -> np.ndarray:
    from tqdm import tqdm

    from moe_domain_llms.embeddings import Encoder
    from moe_domain_llms.lm_states import LMStates

    model = LMStates() if block == quality.LM else Encoder()
    model.load()
    order = np.argsort([len(text) for text in texts])  # similar lengths batch with less padding
    parts = []
    for start in tqdm(range(0, len(texts), 256), desc=f"{name} {block}", unit="batch"):
        batch = [texts[i] for i in order[start : start + 256]]
        if block == quality.LM:
            parts.append(quality.prompt_vectors(batch, [block], lm=model)[block])
        else:
            parts.append(quality.prompt_vectors(batch, [block], encoder=model)[block])
    vectors = np.zeros((len(texts), parts[0].shape[1]), dtype=np.float32)
    vectors[order] = np.concatenate(parts)
    return vectors


def cross_validate(
    texts: list[str],
    weak: np.ndarray,
    strong: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    vectors: dict[str, np.ndarray] | None,
    groups: list[str] | None = None,
    calibrate: bool = True,
) -> tuple[np.ndarray, list[float]]:
    """Held-out need-strong scores for every prompt and, per fold, the held-out strong share
    reached by the threshold the training fold calibrated to a 50% share (none without
    ``calibrate``: the scores, and so APGR, do not depend on it)."""
    scores = np.zeros(len(texts))
    shares = []
    for train, test in folds:
        predictor, _ = quality.fit(
            [texts[i] for i in train],
            weak[train],
            strong[train],
            embeddings=None if vectors is None else {k: v[train] for k, v in vectors.items()},
            groups=None if groups is None else [groups[i] for i in train],
            calibrate=calibrate,
        )
        p_ok = predictor.predict_proba(
            [texts[i] for i in test],
            None if vectors is None else {k: v[test] for k, v in vectors.items()},
        )
        scores[test] = 1 - p_ok
        if calibrate:
            shares.append(float(np.mean(p_ok < predictor.threshold_for(0.5))))
    return scores, shares


def evaluate(
    name: str,
    texts: list[str],
    weak: np.ndarray,
    strong: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    how: str,
    groups: list[str] | None = None,
) -> dict:
    results = {}
    for variant, blocks in VARIANTS.items():
        vectors = vectors_for(name, texts, blocks) if blocks else None
        started = time.perf_counter()
        scores, shares = cross_validate(texts, weak, strong, folds, vectors, groups)
        results[variant] = {
            "apgr": round(apgr(scores, weak, strong), 4),
            "cpt50": round(cpt(scores, weak, strong), 4),
            "heldout_strong_share_at_target_50": [round(s, 3) for s in shares],
            "c_averaged": list(quality.DEFAULT_C),
            "blocks": list(blocks),
            "seconds": round(time.perf_counter() - started, 1),
        }
    oracle = oracle_scores(weak, strong)
    report = {
        "prompts": len(texts),
        "cross_validation": how,
        "weak_accuracy": round(float(weak.mean()), 4),
        "strong_accuracy": round(float(strong.mean()), 4),
        "router": results,
        "random": {"apgr": round(random_apgr(weak, strong), 4)},
        "oracle": {
            "apgr": round(apgr(oracle, weak, strong), 4),
            "cpt50": round(cpt(oracle, weak, strong), 4),
        },
        "published_best_apgr": PUBLISHED_BEST[name],
    }
    print(
        f"\n{name}: {len(texts)} prompts (contaminated dropped), {how}; weak "
        f"{weak.mean():.3f}, strong {strong.mean():.3f} accurate"
    )
    print(f"  {'router':<56} {'APGR':>6} {'CPT(50%)':>9}  held-out share at a 50% target")
    for variant, row in results.items():
        spread = ", ".join(f"{s:.2f}" for s in row["heldout_strong_share_at_target_50"])
        print(f"  {variant:<56} {row['apgr']:>6.3f} {row['cpt50']:>9.3f}  {spread}")
    print(f"  {'random':<56} {report['random']['apgr']:>6.3f} {0.5:>9.3f}")
    best = report["oracle"]
    print(f"  {'oracle (reads the answers)':<56} {best['apgr']:>6.3f} {best['cpt50']:>9.3f}")
    print(f"  {'RouteLLM published best':<56} {PUBLISHED_BEST[name]:>6.3f}")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--write-artefact",
        type=Path,
        metavar="PATH",
        help="instead of benchmarking, train on all of MMLU and GSM8K and write the gate artefact",
    )
    parser.add_argument(
        "--regroupings",
        type=int,
        default=0,
        metavar="N",
        help="also score the headline router on MMLU under N other random subject groupings",
    )
    args = parser.parse_args()
    if not (args.data / "mmlu" / "responses").is_dir():
        print(f"routing: no RouteLLM data at {args.data}", file=sys.stderr)
        return 2
    if args.write_artefact:
        return write_artefact(args.data, args.write_artefact)
    report: dict = {"headline_router": HEADLINE, "datasets": {}, "bars": []}
    texts, subjects, weak, strong = load_mmlu(args.data)
    report["datasets"]["mmlu"] = evaluate(
        "mmlu",
        texts,
        weak,
        strong,
        subject_folds(subjects),
        f"leave-subjects-out, {GROUPS} fixed groups of the 57 subjects",
        groups=subjects,  # the inner folds that calibrate also hold out subjects
    )
    if args.regroupings:
        report["datasets"]["mmlu"]["other_subject_groupings"] = regrouped(
            texts,
            subjects,
            weak,
            strong,
            vectors_for("mmlu", texts, HEADLINE_BLOCKS),
            args.regroupings,
        )
    texts, weak, strong = load_gsm8k(args.data)
    report["datasets"]["gsm8k"] = evaluate(
        "gsm8k",
        texts,
        weak,
        strong,
        fixed_folds(len(texts)),
        "5-fold, fixed folds (seed 0)",
    )
    print()
    for name, dataset in report["datasets"].items():
        value = dataset["router"][HEADLINE]["apgr"]
        bar = {
            "bar": f"{name} APGR > {PUBLISHED_BEST[name]} ({HEADLINE})",
            "value": value,
            "cpt50": dataset["router"][HEADLINE]["cpt50"],
            "result": "PASS" if value > PUBLISHED_BEST[name] else "FAIL",
        }
        others = dataset.get("other_subject_groupings")
        note = ""
        if others:  # the fixed grouping's figure beside what other groupings give
            bar["other_groupings_mean"] = others["mean"]
            bar["other_groupings_above_bar"] = sum(v > PUBLISHED_BEST[name] for v in others["apgr"])
            note = (
                f"; other subject groupings: mean {others['mean']:.3f}, "
                f"{bar['other_groupings_above_bar']} of {len(others['apgr'])} above the bar"
            )
        report["bars"].append(bar)
        print(f"  {bar['result']}  {bar['bar']}  (measured: {value:.3f}{note})")
    write_results(report, args.out)
    return 0


HEADLINE = "prompt features + stem/options MiniLM + SmolLM2 states"
HEADLINE_BLOCKS = quality.DEFAULT_BLOCKS
VARIANTS = {  # name: the blocks read beside the prompt features
    "prompt features": (),
    "prompt features + MiniLM embedding (previous)": (quality.PROMPT,),
    HEADLINE: HEADLINE_BLOCKS,
}


def regrouped(
    texts: list[str],
    subjects: list[str],
    weak: np.ndarray,
    strong: np.ndarray,
    vectors: dict[str, np.ndarray],
    count: int,
) -> dict:
    """The headline router's MMLU APGR under ``count`` other random groupings of the subjects
    (seeds 1..count): the spread says how much of a figure is the fixed grouping's luck."""
    values = []
    for seed in range(1, count + 1):
        folds = subject_folds(subjects, seed)
        scores, _ = cross_validate(texts, weak, strong, folds, vectors, subjects, calibrate=False)
        values.append(round(apgr(scores, weak, strong), 4))
        print(f"  other subject grouping (seed {seed}): APGR {values[-1]:.3f}", flush=True)
    print(
        f"  over {count} other groupings: mean {np.mean(values):.3f}, "
        f"{min(values):.3f} to {max(values):.3f}"
    )
    return {
        "seeds": list(range(1, count + 1)),
        "apgr": values,
        "mean": round(float(np.mean(values)), 4),
        "min": min(values),
        "max": max(values),
    }


def write_artefact(data: Path, output: Path) -> int:
    """The bundled ``quality-cost`` artefact: the headline recipe fitted on every prompt."""
    from moe_domain_llms.embeddings import DEFAULT_ENCODER
    from moe_domain_llms.lm_states import DEFAULT_LAYER, DEFAULT_LM
    from moe_domain_llms.quality_training import train_quality

    texts, _, weak, strong = load_mmlu(data)
    gsm_texts, gsm_weak, gsm_strong = load_gsm8k(data)
    mmlu = vectors_for("mmlu", texts, HEADLINE_BLOCKS)
    gsm = vectors_for("gsm8k", gsm_texts, HEADLINE_BLOCKS)
    vectors = {block: np.vstack([mmlu[block], gsm[block]]) for block in HEADLINE_BLOCKS}
    result = train_quality(
        texts + gsm_texts,
        np.concatenate([weak, gsm_weak]).astype(float),
        np.concatenate([strong, gsm_strong]).astype(float),
        output,
        embeddings=vectors,
        encoder_identity=DEFAULT_ENCODER,
        lm_identity=DEFAULT_LM,
        lm_layer=DEFAULT_LAYER,
        progress=False,
        data="RouteLLM routellm/evals MMLU (57 subjects) and GSM8K test answers, contaminated "
        "prompts dropped",
        source="lm-sys/RouteLLM commit 0b64fda",
        license="Apache-2.0",
        weak_model=WEAK,
        strong_model=STRONG,
    )
    print(result["report"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
