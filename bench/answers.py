"""Answers of the embedded default configuration to everyday questions (``make bench-answers``).

The five questions a new user asks first (a headache, a suspicious email, budgeting, a haiku,
17 times 23) and 20 more across the four domains, sent one at a time, not streamed, to the gateway
``moe serve`` runs with no configuration (the learned gate and the four SmolLM2-135M experts),
in-process. For each: the expert the gate picked, the answer, its time to the full answer,
tokens, finish reason, any sentence said twice, and whether the arithmetic is right. The
trackers of the default configuration write into a temporary ``MOE_DATA_DIR``.

Bars: no answer repeats a sentence, the median time to a full answer is at most 8 s, and
17 times 23 comes back as 391. Writes ``bench/results/answers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

from moe_core import MoE

RESULTS = Path(__file__).parent / "results" / "answers.json"
SUM = "What is 17 \N{MULTIPLICATION SIGN} 23?"
EVERYDAY = [
    "I have a headache. What can I take for it?",
    "I got an email saying my bank account is locked and asking me to confirm my password. "
    "Is it safe?",
    "How should I start budgeting and investing my salary?",
    "Write a haiku about autumn",
    SUM,
]
MORE = [
    "What are the usual symptoms of the flu?",
    "How much water should I drink in a day?",
    "Is it bad to sleep only five hours a night?",
    "How can I lower my blood pressure without medication?",
    "How do I make a strong password?",
    "What is two-factor authentication and should I use it?",
    "My laptop is slow and keeps showing pop-ups. Could it be malware?",
    "Is it safe to use public Wi-Fi at a cafe?",
    "What is the difference between a Roth IRA and a traditional IRA?",
    "Should I pay off my credit card debt or save first?",
    "What is compound interest?",
    "How big should my emergency fund be?",
    "What is the capital of Australia?",
    "Give me three tips for learning a new language.",
    "Explain photosynthesis in simple terms.",
    "Write a short poem about the sea.",
    "Tell me a fun fact about octopuses.",
    "Hello! How are you today?",
    "What is 1,250 + 3,750?",
    "Calculate (12 + 8) * 3",
]
EXPECTED = {
    SUM: "391",
    "What is 1,250 + 3,750?": "5000",
    "Calculate (12 + 8) * 3": "60",
}
# A sentence ends at . ! ? or a line break; repeats are counted among those of 3 words or more.
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[\w']+")
MEDIAN_BAR_S = 8.0


def repeated_sentences(text: str) -> list[str]:
    """Sentences of at least three words said more than once (case and punctuation ignored)."""
    seen: set[str] = set()
    repeated: list[str] = []
    for sentence in _SENTENCES.split(text):
        words = _WORD.findall(sentence.lower())
        if len(words) < 3:
            continue
        key = " ".join(words)
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


async def run(args: argparse.Namespace) -> dict:
    questions = EVERYDAY + ([] if args.quick else MORE)
    load_before = os.getloadavg()
    moe = MoE.from_config(args.config)
    answers = []
    started_at = time.perf_counter()
    async with moe:
        load_s = time.perf_counter() - started_at
        for question in questions:
            body = {"messages": [{"role": "user", "content": question}]}
            started = time.perf_counter()
            response = await moe.complete(body)
            seconds = time.perf_counter() - started
            result, meta = response.result, response.metadata
            repeats = repeated_sentences(result.content)
            answer = {
                "question": question,
                "expert": ", ".join(meta.experts_used),
                "answer": result.content,
                "seconds": round(seconds, 2),
                "completion_tokens": result.usage.completion_tokens if result.usage else None,
                "finish_reason": result.finish_reason,
                "repeated_sentences": repeats,
            }
            if question in EXPECTED:
                answer["expected"] = EXPECTED[question]
                answer["correct"] = EXPECTED[question] in result.content.replace(",", "")
            answers.append(answer)
            mark = "REPEATS" if repeats else "ok"
            print(f"[{seconds:5.1f} s, {answer['expert']:13}] {mark:7} {question}")
            if args.verbose:
                print("    " + result.content.replace("\n", "\n    "))
            sys.stdout.flush()
    times = [a["seconds"] for a in answers]
    median = statistics.median(times)
    with_repeats = [a["question"] for a in answers if a["repeated_sentences"]]
    arithmetic = next(a for a in answers if a["question"] == SUM)
    return {
        "config": args.config or "embedded default",
        "questions": len(answers),
        "load_seconds": round(load_s, 1),
        "median_seconds": round(median, 2),
        "p90_seconds": round(statistics.quantiles(times, n=10)[-1], 2) if len(times) > 1 else None,
        "max_seconds": max(times),
        "median_completion_tokens": statistics.median(a["completion_tokens"] or 0 for a in answers),
        # Decoding speed over the model's answers (not the calculator's): the figure that moves
        # with the machine's load, to read the times by.
        "median_tokens_per_s": round(
            statistics.median(
                (a["completion_tokens"] or 0) / a["seconds"] for a in answers if a["seconds"] >= 1
            ),
            1,
        ),
        "mean_completion_tokens": round(
            statistics.mean(a["completion_tokens"] or 0 for a in answers), 1
        ),
        "finish_reasons": {
            reason: sum(a["finish_reason"] == reason for a in answers)
            for reason in sorted({a["finish_reason"] for a in answers})
        },
        "torch_threads": _torch_threads(),
        # The machine is shared: the 1-minute load average before and after, to read times by.
        "load_average": {"before": round(load_before[0], 1), "after": round(os.getloadavg()[0], 1)},
        "bars": [
            {
                "bar": "no answer repeats a sentence",
                "value": f"{len(answers) - len(with_repeats)}/{len(answers)} without",
                "result": "PASS" if not with_repeats else "FAIL",
            },
            {
                "bar": f"median time to full answer <= {MEDIAN_BAR_S} s",
                "value": round(median, 2),
                "result": "PASS" if median <= MEDIAN_BAR_S else "FAIL",
            },
            {
                "bar": "17 times 23 = 391",
                "value": arithmetic["answer"],
                "result": "PASS" if arithmetic["correct"] else "FAIL",
            },
        ],
        "answers": answers,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a YAML config to measure instead of the default")
    parser.add_argument("--quick", action="store_true", help="the five everyday questions only")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every answer")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory(prefix="moe-bench-answers-") as data_dir:
        os.environ.setdefault("MOE_DATA_DIR", data_dir)
        report = asyncio.run(run(args))
    print(
        f"{report['questions']} questions: median {report['median_seconds']} s, "
        f"p90 {report['p90_seconds']} s, max {report['max_seconds']} s; "
        f"{report['median_tokens_per_s']} tokens/s at a load average of "
        f"{report['load_average']['before']}"
    )
    for bar in report["bars"]:
        print(f"  {bar['result']:4}  {bar['bar']}  (measured: {bar['value']})")
    write_results(report, args.out)
    return 0 if all(bar["result"] == "PASS" for bar in report["bars"]) else 1


if __name__ == "__main__":
    sys.exit(main())
