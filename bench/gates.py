"""Domain gates: held-out accuracy and decisions per second (``make bench-gates``).

Accuracy comes from the fixed ``test`` split of the bundled data (never used for training):
in-domain accuracy over healthcare/finance/cybersecurity queries, and the share of everything
else routed to ``general``, for both gates with their default options (the embedding gate
abstains below its threshold; the share of queries its second opinion decided is reported).
Speed: ``tfidf-nb`` single-query decisions per second on one core (sequential ``route`` calls),
``embedding`` decisions per second with 64 concurrent callers (batched forward passes, the
language model's included), with the encoder in ONNX Runtime (the default) and then in torch.
Writes ``bench/results/gates.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from results_io import write_results

from moe_core.models import ChatRequest
from moe_core.testing import make_moe
from moe_domain_llms.gates import DEFAULT_DATA
from moe_domain_llms.training import evaluate, format_report, load_dataset

RESULTS = Path(__file__).parent / "results" / "gates.json"
DOMAINS = ("healthcare", "finance", "cybersecurity", "general")


def config(kind: str, **options: str) -> dict:
    return {
        "experts": {name: {"kind": "echo"} for name in DOMAINS},
        "gate": {"kind": kind, **options},
    }


def request(text: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}])


async def accuracy(kind: str, texts: list[str], truth: list[str]) -> dict:
    async with make_moe(config(kind)) as moe:
        decisions = [await moe.route(request(text)) for text in texts]
    metrics = evaluate(truth, [d.experts[0] for d in decisions], sorted(DOMAINS))
    consulted = [d.evidence[0].get("second_opinion", False) for d in decisions]
    if kind == "embedding":
        metrics["second_opinion_share"] = round(sum(consulted) / len(consulted), 4)
    return metrics


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
    texts, truth = dataset.part("test")
    report: dict = {"held_out_queries": len(texts), "accuracy": {}}
    for kind in ("tfidf-nb", "embedding"):
        metrics = await accuracy(kind, texts, truth)
        report["accuracy"][kind] = metrics
        print(format_report(f"{kind} (default options) on the held-out split", metrics))
        if "second_opinion_share" in metrics:
            print(f"  decided by the second opinion: {metrics['second_opinion_share']:.1%}")
        print()
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
    emb, nb = report["accuracy"]["embedding"], report["accuracy"]["tfidf-nb"]
    report["bars"] = [
        {"bar": "embedding in-domain accuracy >= 0.97", "value": emb["in_domain_accuracy"]},
        {
            "bar": "embedding out-of-domain to general >= 0.90",
            "value": emb["out_of_domain_to_general"],
        },
        {"bar": "tfidf-nb >= 5000 decisions/s", "value": round(tfidf)},
        {
            "bar": "embedding >= 150 decisions/s under load",
            "value": round(embedding["decisions_per_s"]),
        },
    ]
    limits = [0.97, 0.90, 5000, 150]
    print()
    for bar, limit in zip(report["bars"], limits, strict=True):
        bar["result"] = "PASS" if bar["value"] >= limit else "FAIL"
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
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    report = asyncio.run(main_async(args))
    print()
    write_results(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
