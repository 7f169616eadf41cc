"""What the response cache costs per request, and what a hit saves: in-process, against the
same gateway with no cache, measured in the same run.

The ``echo`` expert answers at once (no network, no model), so the time of a request is the
gateway's own: a cache miss then shows the whole price of a lookup plus storing the answer
(hashing the canonical request, the store's get and put), and a hit the price of answering from
the store. The request is a short conversation with a system prompt (about 2 kB), the size
whose hashing a real request pays. A second expert waits 20 ms, as a fast model would, to show
what a hit saves. Rounds interleave the configurations so that a noisy neighbour hurts all
alike; each round's times are divided by that round's time without a cache, and the figures
are the medians of those ratios.

    .venv/bin/python bench/cache.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_io import write_results
from moe_core.testing import make_moe

RESULTS = Path(__file__).resolve().parent / "results" / "cache.json"
SLOW_EXPERT_S = 0.02
SYSTEM = "You are a careful assistant. " * 40


def request(text: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "an earlier question about the weather"},
            {"role": "assistant", "content": "an earlier answer about the weather " * 10},
            {"role": "user", "content": text},
        ],
        "temperature": 0,
        "max_tokens": 256,
    }


def config(store: str | None, workdir: Path, delay_s: float = 0.0) -> dict[str, Any]:
    experts = {"echo": {"kind": "echo", "delay_s": delay_s}}
    if store is None:
        return {"experts": experts}
    cache = {"kind": "response-cache", "experts": ["echo"], "store": store, "max_entries": 10**6}
    if store == "sqlite":
        cache["path"] = str(workdir / f"cache-{time.monotonic_ns()}.sqlite3")
    return {"experts": experts, "trackers": {"cache": cache}}


async def measure(store: str | None, workdir: Path, n: int, *, hits: bool) -> float:
    """Microseconds per sequential request; every request new (misses) or the same (hits)."""
    moe = make_moe(config(store, workdir))
    counter = itertools.count()
    async with moe:
        same = request("the same question every time")
        for _ in range(20):  # warm up (and, for hits, fill the cache)
            await moe.complete(same if hits else request(f"question {next(counter)}"))
        bodies = [same if hits else request(f"question {next(counter)}") for _ in range(n)]
        started = time.perf_counter()
        for body in bodies:
            await moe.complete(body)
        elapsed = time.perf_counter() - started
        if store is not None:
            assert moe.experts["echo"].expert.calls == (1 if hits else n + 20)
    return elapsed / n * 1e6


async def slow_expert(workdir: Path, n: int) -> dict[str, float]:
    """Milliseconds per request with an expert taking 20 ms: no cache against every hit."""
    timings = {}
    for label, store in (("no cache", None), ("memory hit", "memory")):
        moe = make_moe(config(store, workdir, delay_s=SLOW_EXPERT_S))
        async with moe:
            body = request("a question to a slow expert")
            await moe.complete(body)
            started = time.perf_counter()
            for _ in range(n):
                await moe.complete(body)
            timings[label] = (time.perf_counter() - started) / n * 1000
    return timings


async def run(n: int, rounds: int) -> dict[str, Any]:
    cases = [
        ("off", None, False),
        ("memory miss", "memory", False),
        ("memory hit", "memory", True),
        ("sqlite miss", "sqlite", False),
        ("sqlite hit", "sqlite", True),
    ]
    # Each round's times are divided by that round's time without a cache, and the ratios'
    # median reported: a neighbour's burst then moves one round's pair, not the result.
    ratios: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            shift = index % len(cases)
            timings = {}
            for label, store, hits in cases[shift:] + cases[:shift]:
                timings[label] = await measure(store, Path(tmp), n, hits=hits)
            for label, us in timings.items():
                ratios[label].append(us / timings["off"])
            print(f"round {index + 1}: " + ", ".join(f"{k} {v:.0f} us" for k, v in timings.items()))
        slow = await slow_expert(Path(tmp), max(20, n // 50))
    return {
        "requests_per_trial": n,
        "rounds": rounds,
        "request_bytes": len(str(request("question 0"))),
        "time_per_request_ratio_to_no_cache": {
            label: round(statistics.median(values), 3) for label, values in ratios.items()
        },
        "ratio_range_over_rounds": {
            label: [round(min(values), 3), round(max(values), 3)]
            for label, values in ratios.items()
        },
        "slow_expert": {
            "expert_delay_ms": SLOW_EXPERT_S * 1000,
            "hit_time_ratio_to_no_cache": round(slow["memory hit"] / slow["no cache"], 4),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    n, rounds = (300, 1) if args.quick else (1000, 7)
    report = asyncio.run(run(n, rounds))
    for label, ratio in report["time_per_request_ratio_to_no_cache"].items():
        print(f"{label:<12} {ratio:.3f}x the time of a request without a cache")
    print(f"slow expert: a hit takes {report['slow_expert']['hit_time_ratio_to_no_cache']}x")
    write_results(report, args.out)


if __name__ == "__main__":
    main()
