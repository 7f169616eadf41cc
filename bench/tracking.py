"""What tracking costs per request: the gateway in-process with every tracker, on each store.

The same request is answered by the ``echo`` expert (no network) through ``MoE.complete``, first
with only the ``memory`` tracker (the baseline, measured in the same run), then with the full
tracking set (performance, circuit breaker, feedback, A/B tests, rate limit with a per-key limit
high enough never to refuse) on the memory, SQLite and Redis stores. Sequential latency and
throughput at 32 concurrent requests; rounds are interleaved so a noisy neighbour hurts all
configurations alike. Results: requests per second, microseconds added per request, ratios.

    make bench-tracking [ARGS="--quick"]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_io import write_results
from moe_core.testing import make_moe

RESULTS = Path(__file__).resolve().parent / "results" / "tracking.json"
REDIS_URL = "redis://127.0.0.1:6379/0"
TRACKERS = {
    "memory": {"kind": "memory"},
    "performance": {"kind": "performance"},
    "breaker": {"kind": "circuit-breaker"},
    "feedback": {"kind": "feedback"},
    "ab-tests": {"kind": "ab-tests"},
    "limits": {"kind": "rate-limit", "per_expert": {"echo": {"requests_per_minute": 10**9}}},
}
REQUEST = {
    "messages": [{"role": "user", "content": "how fast is tracking"}],
    "moe": {"task_type": "chat"},
}


def config(store: str | None, workdir: Path, prefix: str) -> dict[str, Any]:
    base: dict[str, Any] = {"experts": {"echo": {"kind": "echo"}}}
    if store is None:
        return {**base, "trackers": {"memory": {"kind": "memory"}}}
    tracking: dict[str, Any] = {"store": store, "prefix": prefix}
    if store == "sqlite":
        tracking["path"] = str(workdir / f"{prefix.strip(':')}.sqlite3")
    if store == "redis":
        tracking["redis_url"] = REDIS_URL
    return {**base, "trackers": TRACKERS, "tracking": tracking}


async def measure(store: str | None, workdir: Path, n: int, concurrency: int) -> dict[str, float]:
    prefix = f"moe-bench:{uuid.uuid4().hex[:8]}:"
    moe = make_moe(config(store, workdir, prefix))
    async with moe:
        for _ in range(50):  # warm up
            await moe.complete(REQUEST)
        started = time.perf_counter()
        for _ in range(n):
            await moe.complete(REQUEST)
        sequential_s = time.perf_counter() - started

        async def worker(count: int) -> None:
            for _ in range(count):
                await moe.complete(REQUEST)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        concurrent_s = time.perf_counter() - started
    if store == "redis":  # after closing: trackers write their last figures when they close
        from redis.asyncio import Redis

        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    done = (n // concurrency) * concurrency
    return {
        "sequential_us_per_request": sequential_s / n * 1e6,
        "concurrent_requests_per_s": done / concurrent_s,
    }


async def run(n: int, rounds: int, concurrency: int, stores: list[str]) -> dict[str, Any]:
    names: list[str | None] = [None, *stores]
    trials: dict[str, list[dict[str, float]]] = {str(name): [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                result = await measure(name, Path(tmp), n, concurrency)
                trials[str(name)].append(result)
                print(f"round {index + 1} {name or 'baseline'}: {result}", flush=True)
    medians = {
        name: {key: statistics.median(t[key] for t in runs) for key in runs[0]}
        for name, runs in trials.items()
    }
    base = medians["None"]
    table = {}
    for name in names:
        row = medians[str(name)]
        label = "baseline (memory tracker only)" if name is None else f"all trackers, {name} store"
        table[label] = {
            "sequential_us_per_request": round(row["sequential_us_per_request"], 1),
            "added_us_per_request": round(
                row["sequential_us_per_request"] - base["sequential_us_per_request"], 1
            ),
            "concurrent_requests_per_s": round(row["concurrent_requests_per_s"], 1),
            "throughput_ratio_to_baseline": round(
                row["concurrent_requests_per_s"] / base["concurrent_requests_per_s"], 3
            ),
        }
    return {"requests_per_trial": n, "rounds": rounds, "concurrency": concurrency, "results": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis store")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    n, rounds = (400, 1) if args.quick else (2000, 3)
    stores = ["memory", "sqlite"] + ([] if args.no_redis else ["redis"])
    report = asyncio.run(run(n, rounds, 32, stores))
    for label, row in report["results"].items():
        print(f"{label:<34} {row}")
    write_results(report, args.out)


if __name__ == "__main__":
    main()
