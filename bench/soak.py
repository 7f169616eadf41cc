"""Soak: minutes of mixed load on one gateway, watching for leaks, growth and failures.

The gateway runs as ``moe serve`` on the SQLite tracking store, in front of two fake OpenAI
upstreams (moe_openai_compat.testing): a healthy one, and one that hangs before its first byte.
Three experts use them: ``primary`` (healthy), ``hanging`` (times out after 0.5 s) and ``down``
(a port nothing listens on); the last two fall back to ``primary``, and circuit breakers open
and probe them again every few seconds, so injected failures never reach a client. The load, a
paced asyncio generator in this process, mixes plain and streamed chats (a fifth of them asking
a failing expert), feedback on answered requests, routing decisions, and invalid bodies that
must get a 400. Every request must get what it expects: anything else is a failure.

Every few seconds it samples the gateway process from /proc (resident memory, open file
descriptors, CPU) and the store's files (the SQLite database with its WAL, and its rows per
table); each minute it reports latency percentiles per minute and the failures. The feedback
tracker remembers requests for one minute here (``remember_days``), so that expired rows are
purged within the run and the store can reach its steady size.

    make bench-soak [ARGS="--quick"]            # 1 minute
    python bench/soak.py --minutes 5 --rate 40
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import aiohttp

# The benchmarks' shared modules, however this one is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import summary
from results_io import write_results
from servers import Server, free_port

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent  # the gateway's venv: `moe` lives beside this python
RESULTS = BENCH / "results" / "soak.json"
SAMPLE_S = 5.0
REQUEST_TIMEOUT_S = 30.0
# What the load is made of: operation -> share of requests.
MIX = {"chat": 0.40, "stream": 0.25, "feedback": 0.15, "route": 0.10, "invalid": 0.10}
FAILING_EXPERT_SHARE = 0.2  # of chats, asked of an expert whose upstream fails


def gateway_config(workdir: Path, healthy: str, hanging: str) -> Path:
    config = {
        "server": {"host": "127.0.0.1", "access_log": False, "log_level": "warning"},
        "experts": {
            "primary": {"kind": "openai", "base_url": f"{healthy}/v1", "model": "fake-model"},
            "hanging": {
                "kind": "openai",
                "base_url": f"{hanging}/v1",
                "first_byte_timeout_s": 0.5,
                "fallbacks": ["primary"],
            },
            "down": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "fallbacks": ["primary"],
            },
        },
        "gate": {"kind": "fixed", "expert": "primary"},
        "trackers": {
            "memory": {"kind": "memory"},
            "performance": {"kind": "performance"},
            "breaker": {"kind": "circuit-breaker", "failure_threshold": 3, "reset_timeout_s": 5},
            "feedback": {"kind": "feedback", "remember_days": 1 / 1440},
        },
        "tracking": {"store": "sqlite", "path": str(workdir / "tracking.sqlite3")},
    }
    path = workdir / "moe.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


class Load:
    """Paced requests of the mix; outcomes kept per minute of the run."""

    def __init__(self, url: str, rate: float, seed: int) -> None:
        self.url = url
        self.rate = rate
        self.random = random.Random(seed)
        self.started = time.monotonic()
        self.latencies: dict[int, list[float]] = defaultdict(list)
        self.by_op: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.failures: dict[int, int] = defaultdict(int)
        self.first_failures: list[str] = []
        self.answered: deque[str] = deque(maxlen=500)  # request ids that can get feedback

    def minute(self) -> int:
        return int((time.monotonic() - self.started) // 60)

    async def run(self, seconds: float, concurrency: int) -> None:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            pending: set[asyncio.Task[None]] = set()
            deadline = self.started + seconds
            next_at = time.monotonic()
            while (now := time.monotonic()) < deadline:
                if now < next_at:
                    await asyncio.sleep(next_at - now)
                next_at += 1 / self.rate
                if len(pending) >= concurrency:  # the gateway is behind: wait, do not pile up
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self.one(session))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)

    async def one(self, session: aiohttp.ClientSession) -> None:
        op = self.random.choices(list(MIX), weights=list(MIX.values()))[0]
        minute = self.minute()
        started = time.perf_counter()
        try:
            await getattr(self, op)(session)
        except Exception as exc:  # every unexpected outcome is a measured failure
            self.failures[minute] += 1
            if len(self.first_failures) < 5:
                self.first_failures.append(f"{op}: {type(exc).__name__}: {exc}"[:300])
            return
        self.latencies[minute].append(time.perf_counter() - started)
        self.by_op[op][minute] += 1

    def model(self) -> str:
        if self.random.random() < FAILING_EXPERT_SHARE:
            return self.random.choice(["hanging", "down"])
        return "auto"

    async def chat(self, session: aiohttp.ClientSession) -> None:
        text = f"soak {self.random.randrange(10**6)}"
        body = {"model": self.model(), "messages": [{"role": "user", "content": text}]}
        async with session.post(f"{self.url}/v1/chat/completions", json=body) as response:
            answer = await response.json()
            if response.status != 200 or answer["choices"][0]["message"]["content"] != (
                f"echo: {text}"
            ):
                raise RuntimeError(f"HTTP {response.status}: {str(answer)[:200]}")
        self.answered.append(answer["id"])

    async def stream(self, session: aiohttp.ClientSession) -> None:
        body = {
            "model": self.model(),
            "stream": True,
            "messages": [{"role": "user", "content": "stream a few words please"}],
        }
        async with session.post(f"{self.url}/v1/chat/completions", json=body) as response:
            raw = await response.read()
        if response.status != 200 or not raw.endswith(b"data: [DONE]\n\n"):
            raise RuntimeError(f"HTTP {response.status}: {raw[-200:]!r}")

    async def feedback(self, session: aiohttp.ClientSession) -> None:
        if not self.answered:
            return await self.chat(session)
        body = {"request_id": self.random.choice(self.answered), "rating": 4}
        async with session.post(f"{self.url}/v1/feedback", json=body) as response:
            if response.status == 404:  # forgotten: older than remember_days, as configured
                return None
            if response.status != 201:
                raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
        return None

    async def route(self, session: aiohttp.ClientSession) -> None:
        body = {"messages": [{"role": "user", "content": "which expert?"}]}
        async with session.post(f"{self.url}/v1/route", json=body) as response:
            answer = await response.json()
            if response.status != 200 or answer["experts"] != ["primary"]:
                raise RuntimeError(f"HTTP {response.status}: {str(answer)[:200]}")

    async def invalid(self, session: aiohttp.ClientSession) -> None:
        body = self.random.choice([b"{", b"[]", b'{"messages": []}', b'{"messages": 7}'])
        headers = {"Content-Type": "application/json"}
        url = f"{self.url}/v1/chat/completions"
        async with session.post(url, data=body, headers=headers) as response:
            answer = await response.json()
            if response.status != 400 or "message" not in answer["error"]:
                raise RuntimeError(f"HTTP {response.status}: {str(answer)[:200]}")


def process_sample(pid: int) -> dict[str, float]:
    """Resident memory (MiB), open file descriptors and CPU seconds of one process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return {
        "rss_mib": round(rss_kib / 1024, 2),
        "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": round(cpu_s, 2),
    }


def store_sample(path: Path) -> dict[str, Any]:
    """The SQLite store's size on disk (database, WAL and shared memory) and rows per table,
    read through a read-only connection of its own."""
    sizes = {
        suffix or "db": (path.parent / (path.name + suffix)).stat().st_size / 1024
        for suffix in ("", "-wal", "-shm")
        if (path.parent / (path.name + suffix)).exists()
    }
    rows: dict[str, int] = {}
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            for table in ("hashes", "lists", "claims", "records"):
                rows[table] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            db.close()
    return {
        "store_kib": round(sum(sizes.values()), 1),
        "store_files_kib": {name.lstrip("-"): round(kib, 1) for name, kib in sizes.items()},
        "rows": rows,
    }


async def sample_forever(pid: int, store: Path, load: Load, out: list[dict[str, Any]]) -> None:
    while True:
        sample = {"t_s": round(time.monotonic() - load.started, 1)}
        sample |= process_sample(pid) | store_sample(store)
        out.append(sample)
        await asyncio.sleep(SAMPLE_S)


def per_minute(load: Load, samples: list[dict[str, Any]], minutes: int) -> list[dict[str, Any]]:
    rows = []
    for minute in range(minutes):
        inside = [s for s in samples if minute * 60 <= s["t_s"] < (minute + 1) * 60] or samples
        last = inside[-1]
        latency = summary(load.latencies[minute])
        rows.append(
            {
                "minute": minute + 1,
                "requests": latency["n"] + load.failures[minute],
                "failures": load.failures[minute],
                "p50_ms": latency.get("p50_ms"),
                "p99_ms": latency.get("p99_ms"),
                "rss_mib": last["rss_mib"],
                "open_fds": last["open_fds"],
                "store_kib": last["store_kib"],
                "store_files_kib": last["store_files_kib"],
                "store_rows": last["rows"],
                "cpu_s": last["cpu_s"],
                "by_operation": {op: counts[minute] for op, counts in load.by_op.items()},
            }
        )
    return rows


def verdict(rows: list[dict[str, Any]], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS growth from the end of the first (warm-up) minute to the end, how fast the store
    and each of its tables grew after it, and the totals."""
    baseline = rows[0]["rss_mib"]
    last = samples[-1]
    fds = [sample["open_fds"] for sample in samples]
    after = max(1, len(rows) - 1)  # minutes after the warm-up
    growth = {
        table: round((count - rows[0]["store_rows"].get(table, 0)) / after, 1)
        for table, count in last["rows"].items()
    }
    rss_growth = (last["rss_mib"] - baseline) / baseline * 100
    failures = sum(row["failures"] for row in rows)
    return {
        "bars": {"rss_growth_under_10_pct": rss_growth < 10, "no_failures": failures == 0},
        "rss_growth_pct_after_warmup": round(rss_growth, 2),
        "rss_mib_first_sample": samples[0]["rss_mib"],
        "rss_mib_end_of_minute_1": baseline,
        "rss_mib_end": last["rss_mib"],
        "rss_mib_peak": max(s["rss_mib"] for s in samples),
        "open_fds_range": [min(fds), max(fds)],
        "store_kib_end": last["store_kib"],
        "store_files_kib_end": last["store_files_kib"],
        "store_rows_end": last["rows"],
        "store_kib_per_min_after_warmup": round(
            (last["store_kib"] - rows[0]["store_kib"]) / after, 1
        ),
        "store_rows_per_min_after_warmup": growth,
        "requests": sum(row["requests"] for row in rows),
        "failures": failures,
    }


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    fake = [sys.executable, "-m", "moe_openai_compat.testing", "--port", "{port}"]
    with (
        Server("upstream", fake, "/v1/models", workdir) as healthy,
        Server("hanging", [*fake, "--delay", "30"], "/v1/models", workdir) as hanging,
    ):
        healthy.wait_ready(60)
        hanging.wait_ready(60)
        config = gateway_config(workdir, healthy.url, hanging.url)
        argv = [str(VENV_BIN / "moe"), "serve", "--config", str(config), "--port", "{port}"]
        with Server("gateway", argv, "/health", workdir) as gateway:
            gateway.wait_ready(120)
            load = Load(gateway.url, args.rate, args.seed)
            samples: list[dict[str, Any]] = []
            sampling = asyncio.create_task(
                sample_forever(gateway.proc.pid, workdir / "tracking.sqlite3", load, samples)
            )
            try:
                await load.run(args.minutes * 60, args.concurrency)
            finally:
                sampling.cancel()
            samples.append(
                {"t_s": round(time.monotonic() - load.started, 1)}
                | process_sample(gateway.proc.pid)
                | store_sample(workdir / "tracking.sqlite3")
            )
    rows = per_minute(load, samples, args.minutes)
    return {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "concurrency": args.concurrency,
        "mix": MIX,
        "failing_expert_share_of_chats": FAILING_EXPERT_SHARE,
        "verdict": verdict(rows, samples),
        "first_failures": load.first_failures,
        "per_minute": rows,
        "samples": samples,
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"{'min':>3} {'reqs':>6} {'fail':>4} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'RSS MiB':>8} {'fds':>4} {'store KiB':>9}  rows")  # fmt: skip
    for row in report["per_minute"]:
        print(
            f"{row['minute']:>3} {row['requests']:>6} {row['failures']:>4} "
            f"{row['p50_ms'] or 0:>8.2f} {row['p99_ms'] or 0:>8.2f} {row['rss_mib']:>8.1f} "
            f"{row['open_fds']:>4} {row['store_kib']:>9.1f}  {row['store_rows']}"
        )
    print(json.dumps(report["verdict"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one minute")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.minutes = 1
    with tempfile.TemporaryDirectory(prefix="moe-soak-") as tmp:
        report = asyncio.run(soak(args, Path(tmp)))
    print_table(report)
    write_results(report, args.out)
    if report["verdict"]["failures"]:
        print("first failures:", *report["first_failures"], sep="\n  ")


if __name__ == "__main__":
    main()
