"""Domain gates: held-out accuracy and decisions per second (``make bench-gates``).

Accuracy comes from the fixed ``test`` split of the bundled data (never used for training):
in-domain accuracy over healthcare/finance/cybersecurity queries, and the share of everything
else routed to ``general``, for both gates with their default options (the embedding gate
abstains below its threshold; the share of queries its second opinion decided is reported).
The split is reported by the rows' ``style``: ``conversational`` (first-person users' questions,
the repository's original held-out split), ``textbook`` (exam-style stems, definitions, keyword
queries, learners' English) and ``small-talk`` (greetings, chit-chat, keyboard mash, code, all
``general``); and :data:`PROBES`, the cases a user reported, each of which must reach
``general`` with the confidence of ``general``.
Exam questions nobody here wrote: MMLU's questions with their options (RouteLLM's copy in
``../shared/data/routellm``, read for measuring only, never for training or tuning), each
subject mapped to the label a user would expect (:data:`EXAM_SUBJECTS`; subjects that straddle
two labels, such as biology or psychology, are left out), at most :data:`PER_SUBJECT` questions
per subject (the first ones), routed 64 at a time.
Speed: ``tfidf-nb`` single-query decisions per second on one core (sequential ``route`` calls),
``embedding`` decisions per second with 64 concurrent callers (batched forward passes, the
language model's included), with the encoder in ONNX Runtime (the default) and then in torch.
Writes ``bench/results/gates.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import time
from pathlib import Path

from results_io import write_results

from moe_core.models import ChatRequest
from moe_core.testing import make_moe
from moe_domain_llms.gates import DEFAULT_DATA
from moe_domain_llms.training import evaluate, format_report, load_dataset

EXAM_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm" / "mmlu"
PER_SUBJECT = 100
# Fixed from the subjects' names before any measurement, not from how the gate did on them.
EXAM_LABELS = {
    "healthcare": (
        "anatomy clinical_knowledge college_medicine human_aging medical_genetics nutrition "
        "professional_medicine virology"
    ),
    "finance": (
        "econometrics high_school_macroeconomics high_school_microeconomics professional_accounting"
    ),
    "cybersecurity": "computer_security",
    "general": (
        "abstract_algebra astronomy business_ethics college_chemistry college_computer_science "
        "college_mathematics college_physics conceptual_physics electrical_engineering "
        "elementary_mathematics formal_logic global_facts high_school_chemistry "
        "high_school_computer_science high_school_european_history high_school_geography "
        "high_school_government_and_politics high_school_mathematics high_school_physics "
        "high_school_statistics high_school_us_history high_school_world_history "
        "international_law jurisprudence logical_fallacies machine_learning management "
        "marketing miscellaneous moral_disputes moral_scenarios philosophy prehistory "
        "professional_law public_relations security_studies sociology us_foreign_policy "
        "world_religions"
    ),
}
EXAM_SUBJECTS = {
    subject: label for label, subjects in EXAM_LABELS.items() for subject in subjects.split()
}

RESULTS = Path(__file__).parent / "results" / "gates.json"
DOMAINS = ("healthcare", "finance", "cybersecurity", "general")
STYLES = ("conversational", "textbook", "small-talk")
# What users reported reaching a domain expert: greetings, thanks, keyboard mash, emoji, nothing.
PROBES = ("hi", "hello there", "thanks!", "asdf qwer zxcv", "hey, what's new?", "👍", "???", "")


ARTEFACTS: Path | None = None  # --artefacts: measure the artefacts in this folder instead


def config(kind: str, **options: str) -> dict:
    if ARTEFACTS is not None:
        options = {"artefact": str(ARTEFACTS / f"{kind}.npz"), **options}
    return {
        "experts": {name: {"kind": "echo"} for name in DOMAINS},
        "gate": {"kind": kind, **options},
    }


def exam_questions() -> tuple[list[str], list[str]]:
    """The first :data:`PER_SUBJECT` questions of each mapped subject, and their labels."""
    texts, labels = [], []
    for subject, label in sorted(EXAM_SUBJECTS.items()):
        with (EXAM_DATA / "responses" / f"mmlu_{subject}.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))[:PER_SUBJECT]
        texts += [row["prompt"] for row in rows]
        labels += [label] * len(rows)
    return texts, labels


async def exam_accuracy(kind: str, texts: list[str], truth: list[str]) -> dict:
    """Metrics on exam questions, routed in concurrent groups as a loaded gateway would."""
    decisions = []
    async with make_moe(config(kind)) as moe:
        for start in range(0, len(texts), 64):
            group = texts[start : start + 64]
            decisions += await asyncio.gather(*(moe.route(request(text)) for text in group))
    return evaluate(truth, [d.experts[0] for d in decisions], sorted(DOMAINS))


def request(text: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}])


async def accuracy(
    kind: str, texts: list[str], truth: list[str], styles: list[str]
) -> tuple[dict, list]:
    """Metrics per style of held-out row, and the gate's decisions for :data:`PROBES`."""
    async with make_moe(config(kind)) as moe:
        decisions = [await moe.route(request(text)) for text in texts]
        probes = [await moe.route(request(text)) for text in PROBES]
    by_style = {}
    for style in STYLES:
        rows = [i for i, s in enumerate(styles) if s == style]
        if not rows:
            continue
        metrics = evaluate(
            [truth[i] for i in rows], [decisions[i].experts[0] for i in rows], sorted(DOMAINS)
        )
        consulted = [decisions[i].evidence[0].get("second_opinion", False) for i in rows]
        if kind == "embedding":
            metrics["second_opinion_share"] = round(sum(consulted) / len(consulted), 4)
        by_style[style] = metrics
    return by_style, [
        {
            "text": text,
            "expert": d.experts[0],
            "confidence": d.confidence,
            "p_general": d.scores.get("general"),
        }
        for text, d in zip(PROBES, probes, strict=True)
    ]


async def tfidf_rate(texts: list[str], seconds: float) -> float:
    async with make_moe(config("tfidf-nb")) as moe:
        gate, cards, signals = moe.gate, moe.experts.cards(), moe.trackers
        requests = [request(text) for text in texts]
        done, deadline = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            for item in requests[:200]:
                await gate.route(item, cards, signals)
            done += 200
        return done / (time.perf_counter() - started)


async def embedding_rate(
    texts: list[str], seconds: float, concurrency: int, runtime: str = "onnx"
) -> dict:
    async with make_moe(config("embedding", runtime=runtime)) as moe:
        requests = [request(text) for text in texts]
        done = 0
        deadline = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            nonlocal done
            index = offset
            while time.perf_counter() < deadline:
                await moe.route(requests[index % len(requests)])
                done += 1
                index += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        batcher = moe.gate.encoder.batcher
        return {"decisions_per_s": done / elapsed, "mean_batch": batcher.items / batcher.batches}


async def main_async(args: argparse.Namespace) -> dict:
    dataset = load_dataset(DEFAULT_DATA)
    held_out = [i for i, split in enumerate(dataset.splits) if split == "test"]
    texts = [dataset.texts[i] for i in held_out]
    truth = [dataset.labels[i] for i in held_out]
    styles = [dataset.styles[i] for i in held_out]
    conversational = [t for t, s in zip(texts, styles, strict=True) if s == "conversational"]
    report: dict = {
        "held_out_queries": {style: styles.count(style) for style in STYLES},
        "accuracy": {},
        "probes": {},
    }
    for kind in ("tfidf-nb", "embedding"):
        by_style, probes = await accuracy(kind, texts, truth, styles)
        report["accuracy"][kind] = by_style
        report["probes"][kind] = probes
        for style, metrics in by_style.items():
            print(format_report(f"{kind} (default options), held-out {style} rows", metrics))
            if "second_opinion_share" in metrics:
                print(f"  decided by the second opinion: {metrics['second_opinion_share']:.1%}")
            print()
        for probe in probes:
            print(
                f"  {probe['text']!r:>18} -> {probe['expert']} (confidence "
                f"{probe['confidence']}, P(general) {probe['p_general']})"
            )
        print()
    if EXAM_DATA.is_dir() and not args.no_exams:
        exam_texts, exam_truth = exam_questions()
        report["exam_questions"] = {"n": len(exam_texts), "per_subject": PER_SUBJECT}
        for kind in ("tfidf-nb", "embedding"):
            metrics = await exam_accuracy(kind, exam_texts, exam_truth)
            report["exam_questions"][kind] = metrics
            print(format_report(f"{kind}: exam questions not in this repository", metrics))
            print()
    texts = conversational  # speed is measured on the repository's original queries
    tfidf = await tfidf_rate(texts, args.seconds)
    embedding = await embedding_rate(texts, args.seconds, args.concurrency)
    # The same load with the encoder run by torch: what the default ONNX Runtime is worth,
    # measured in the same run on the same machine.
    in_torch = await embedding_rate(texts, args.seconds, args.concurrency, runtime="torch")
    report["speed"] = {
        "tfidf_nb_single_query_decisions_per_s": round(tfidf),
        "embedding_concurrent_decisions_per_s": round(embedding["decisions_per_s"]),
        "embedding_mean_batch": round(embedding["mean_batch"], 1),
        "embedding_torch_runtime_decisions_per_s": round(in_torch["decisions_per_s"]),
        "onnx_over_torch": round(embedding["decisions_per_s"] / in_torch["decisions_per_s"], 2),
        "concurrency": args.concurrency,
    }
    print(f"tfidf-nb: {tfidf:,.0f} single-query decisions/s (one core, sequential)")
    print(
        f"embedding: {embedding['decisions_per_s']:,.0f} decisions/s with {args.concurrency} "
        f"concurrent callers (mean batch {embedding['mean_batch']:.1f}); the encoder in torch "
        f"instead of ONNX Runtime: {in_torch['decisions_per_s']:,.0f} "
        f"({report['speed']['onnx_over_torch']:.2f}x for ONNX Runtime)"
    )
    emb = report["accuracy"]["embedding"]["conversational"]
    nb = report["accuracy"]["tfidf-nb"]["conversational"]
    textbook = report["accuracy"]["embedding"].get("textbook", {})
    small_talk = report["accuracy"]["embedding"].get("small-talk", {})
    probes = report["probes"]["embedding"]
    report["bars"] = [
        {"bar": "embedding in-domain accuracy >= 0.97", "value": emb["in_domain_accuracy"]},
        {
            "bar": "embedding out-of-domain to general >= 0.90",
            "value": emb["out_of_domain_to_general"],
        },
        {
            "bar": "embedding textbook in-domain accuracy >= 0.90",
            "value": textbook.get("in_domain_accuracy"),
        },
        {
            "bar": "embedding textbook out-of-domain to general >= 0.90",
            "value": textbook.get("out_of_domain_to_general"),
        },
        {
            "bar": "embedding small talk to general = 1",
            "value": small_talk.get("out_of_domain_to_general"),
        },
        {
            "bar": "embedding reported probes to general with P(general) as confidence = 1",
            "value": round(
                sum(
                    p["expert"] == "general"
                    and p["confidence"] is not None
                    and abs(p["confidence"] - p["p_general"]) < 1e-4
                    for p in probes
                )
                / len(probes),
                4,
            ),
        },
        {"bar": "tfidf-nb >= 5000 decisions/s", "value": round(tfidf)},
        {
            "bar": "embedding >= 150 decisions/s under load",
            "value": round(embedding["decisions_per_s"]),
        },
    ]
    limits = [0.97, 0.90, 0.90, 0.90, 1.0, 1.0, 5000, 150]
    print()
    for bar, limit in zip(report["bars"], limits, strict=True):
        bar["result"] = "PASS" if bar["value"] is not None and bar["value"] >= limit else "FAIL"
        print(f"  {bar['result']:4}  {bar['bar']}  (measured: {bar['value']})")
    print(
        f"\n  side by side, in-domain: embedding {emb['in_domain_accuracy']:.3f} vs tfidf-nb "
        f"{nb['in_domain_accuracy']:.3f}; out-of-domain to general: embedding "
        f"{emb['out_of_domain_to_general']:.3f} vs tfidf-nb {nb['out_of_domain_to_general']:.3f}"
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per speed measurement")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--artefacts", type=Path, help="folder of tfidf-nb.npz and embedding.npz to measure"
    )
    parser.add_argument("--no-exams", action="store_true", help="skip the exam questions")
    args = parser.parse_args()
    global ARTEFACTS
    ARTEFACTS = args.artefacts
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    report = asyncio.run(main_async(args))
    print()
    write_results(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
