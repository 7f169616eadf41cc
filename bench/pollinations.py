"""Pollinations workflow: what running modalities concurrently saves, and what the local
classifier costs next to the LLM one.

Against the fake Pollinations API (moe_pollinations.testing) with fixed per-model delays that
stand in for real generation times (text, image and speech models each slow in their own way),
the combined text+image+speech answer through the ``multimodal`` combiner is timed next to the
same three answers asked one after another (the baseline: what a client calling each model
itself would wait), in the same run. The classifier part times the heuristic classifier and the
LLM classifier (one loopback round trip to the fake, no model delay) per prompt.

    make bench-pollinations [ARGS="--rounds 5"]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from moe_core.testing import make_moe
from moe_pollinations.classify import heuristic
from moe_pollinations.registry import experts_config, snapshot
from moe_pollinations.testing import FakePollinations, ModelBehaviour

RESULTS = Path(__file__).resolve().parent / "results" / "pollinations.json"
DELAYS = {"openai-fast": 0.30, "flux": 0.50, "openai-audio": 0.20}
PROMPT = "Explain how rockets work with a picture, and read the explanation aloud"
PROMPTS = [
    "hi, how are you?",
    "Write a python function that reverses a linked list",
    "Draw a red fox in the snow",
    "Explain photosynthesis and show me a diagram, then read it aloud",
    "Prove that the square root of 2 is irrational, step by step",
]


async def run(rounds: int) -> dict:
    fake = await FakePollinations(
        behaviour={name: ModelBehaviour(delay_s=delay) for name, delay in DELAYS.items()}
    ).start()
    cache = tempfile.mkdtemp()
    connection = {**fake.options(), "token_env": None, "referrer_env": None}
    config = {
        "experts": experts_config(snapshot(), **connection, cache_dir=cache),
        "gate": {"kind": "task-classifier", "classifier": "heuristic", **connection},
        "trackers": {},
    }
    moe = make_moe(config)
    llm_gate = make_moe({**config, "gate": {**config["gate"], "classifier": "llm"}}).gate
    await moe.start()
    await llm_gate.start()
    combined, sequential = [], []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            response = await moe.complete({"messages": [{"role": "user", "content": PROMPT}]})
            combined.append(time.perf_counter() - started)
            assert response.result.modalities() == {"text": True, "images": 1, "audio": 1}
            started = time.perf_counter()
            text = await moe.complete(
                {"model": "openai-fast", "messages": [{"role": "user", "content": PROMPT}]}
            )
            await moe.complete({"model": "flux", "messages": [{"role": "user", "content": PROMPT}]})
            await moe.complete(
                {
                    "model": "openai-audio",
                    "messages": [{"role": "user", "content": text.result.content}],
                    "modalities": ["text", "audio"],
                    "audio": {"voice": "nova", "format": "mp3"},
                }
            )
            sequential.append(time.perf_counter() - started)
        heuristic_s, llm_s = [], []
        for _ in range(rounds * 20):
            for prompt in PROMPTS:
                started = time.perf_counter()
                heuristic(prompt)
                heuristic_s.append(time.perf_counter() - started)
        verdict = (
            '{"task_type":"text","complexity":0.1,"creativity":0.1,"visual_need":0,"audio_need":0}'
        )
        fake.behaviour["openai-fast"] = ModelBehaviour(reply=verdict)
        for _ in range(rounds * 4):
            for prompt in PROMPTS:
                request = moe.parse({"messages": [{"role": "user", "content": prompt}]})
                started = time.perf_counter()
                _, how = await llm_gate.classify(request)
                llm_s.append(time.perf_counter() - started)
                assert how.startswith("llm:"), how
    finally:
        await llm_gate.close()
        await moe.aclose()
        await fake.close()
    combined_median, sequential_median = statistics.median(combined), statistics.median(sequential)
    return {
        "benchmark": "pollinations",
        "model_delays_s": DELAYS,
        "rounds": rounds,
        "combined_answer_median_s": round(combined_median, 4),
        "sequential_baseline_median_s": round(sequential_median, 4),
        "combined_over_sequential": round(combined_median / sequential_median, 3),
        "heuristic_classifier_median_us": round(statistics.median(heuristic_s) * 1e6, 1),
        "llm_classifier_loopback_median_ms": round(statistics.median(llm_s) * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from results_io import write_results

    from moe_core.logging import configure_logging

    configure_logging("warning", "console")
    report = asyncio.run(run(args.rounds))
    for key, value in report.items():
        print(f"{key:36} {value}")
    write_results(report, args.out)


if __name__ == "__main__":
    main()
