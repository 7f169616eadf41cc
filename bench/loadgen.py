"""A cheap load generator for one OpenAI-style endpoint; prints one JSON result line.

It runs in its own process, away from the servers it measures, so that on a small machine the
client's CPU is not charged to the server (or the other way round), and every target is driven by
the very same client code, payload and concurrency. aiohttp on uvloop is the cheapest client at
hand in Python; httpx and the ``openai`` expert's own client (``moe_openai_compat.http1``) are here
only for the client-choice comparison. Every loop is bounded by a
count or a deadline, and every request by a timeout.

    python bench/loadgen.py URL --mode seq --count 2000 [--stream] [--client httpx|http1]
    python bench/loadgen.py URL --mode conc --duration 5 --concurrency 32 [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import uvloop

from moe_openai_compat.http1 import HTTPPool

PAYLOAD = {"model": "auto", "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}
HEADERS = {"Content-Type": "application/json"}
REQUEST_TIMEOUT_S = 30.0

# One request: returns (seconds to the first body byte, seconds to the end of the body).
Call = Callable[[], Awaitable[tuple[float, float]]]


def summary(samples: list[float]) -> dict[str, float | int]:
    """Nearest-rank percentiles in milliseconds; raw samples would bloat the JSON for no gain."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 4)

    return {
        "n": len(ordered),
        "min_ms": pct(0.0),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 4),
    }


def check(body: bytes, *, stream: bool) -> None:
    """A cheap sanity check that the answer is complete: a 200 alone proves little."""
    if not (body.endswith(b"data: [DONE]\n\n") if stream else b'"echo: Say hello' in body):
        raise RuntimeError(f"unexpected answer: {body[-200:]!r}")


def aiohttp_call(session: aiohttp.ClientSession, url: str, body: bytes, stream: bool) -> Call:
    """A request that reads the whole body; for a stream, the first chunk's arrival is TTFB."""

    async def call() -> tuple[float, float]:
        start = time.perf_counter()
        async with session.post(url, data=body, headers=HEADERS) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {(await response.read())[:200]!r}")
            if not stream:
                check(await response.read(), stream=False)
                end = time.perf_counter()
                return end - start, end - start
            tail = await response.content.readany()
            ttfb = time.perf_counter() - start
            async for chunk in response.content.iter_any():
                tail = tail[-16:] + chunk  # "[DONE]" may straddle two reads
            check(tail, stream=True)
            return ttfb, time.perf_counter() - start

    return call


def httpx_call(client: httpx.AsyncClient, url: str, body: bytes, stream: bool) -> Call:
    """The same request through httpx, for the client comparison (non-streaming is enough)."""
    if stream:
        raise ValueError("the httpx client is only measured without streaming")

    async def call() -> tuple[float, float]:
        start = time.perf_counter()
        response = await client.post(url, content=body, headers=HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.content[:200]!r}")
        check(response.content, stream=False)
        end = time.perf_counter()
        return end - start, end - start

    return call


def http1_call(pool: HTTPPool, path: str, body: bytes, stream: bool) -> Call:
    """The same request through the ``openai`` expert's client."""

    async def call() -> tuple[float, float]:
        start = time.perf_counter()
        async with pool.stream(path, body) as answer:
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}: {(await answer.read())[:200]!r}")
            ttfb = None
            tail = b""
            async for chunk in answer.chunks():
                if ttfb is None:
                    ttfb = time.perf_counter() - start
                tail = tail[-16:] + chunk if stream else tail + chunk
            check(tail, stream=stream)
            return ttfb or 0.0, time.perf_counter() - start

    return call


class Errors:
    """Counts failures and keeps the first message, so a broken target is reported, not hidden."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, exc: BaseException) -> None:
        self.count += 1
        self.first = self.first or f"{type(exc).__name__}: {exc}"[:300]


async def sequential(call: Call, n: int, warmup: int, max_s: float) -> dict[str, Any]:
    """One request at a time on one kept-alive connection: the per-request latency floor."""
    warm_errors = Errors()
    for _ in range(warmup):
        try:
            await call()
        except Exception as exc:  # any failure is a measured outcome
            warm_errors.add(exc)
    if warmup and warm_errors.count == warmup:
        return {"error": f"every warm-up request failed: {warm_errors.first}"}
    errors = Errors()
    ttfb: list[float] = []
    total: list[float] = []
    deadline = time.perf_counter() + max_s
    for _ in range(n):
        if time.perf_counter() > deadline:
            break
        try:
            first, whole = await call()
        except Exception as exc:
            errors.add(exc)
            continue
        ttfb.append(first)
        total.append(whole)
    return {
        "latency": summary(total),
        "ttfb": summary(ttfb),
        "errors": errors.count,
        "first_error": errors.first,
    }


async def concurrent(
    call: Call, workers: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    """`workers` closed-loop clients; rps counts the requests that end inside the window.

    Counting by end time (not start) is unbiased in steady state whatever the latency, which
    matters for a slow target whose 32 in-flight requests would otherwise straddle the edges.
    """
    errors = Errors()
    latencies: list[float] = []
    ttfbs: list[float] = []
    window_start = time.perf_counter() + warmup_s
    window_end = window_start + duration_s
    done = 0  # every successful request, warm-up and tail too: the divisor for CPU per request

    async def worker() -> None:
        nonlocal done
        while (now := time.perf_counter()) < window_end:
            try:
                first, whole = await call()
            except Exception as exc:
                errors.add(exc)
                await asyncio.sleep(0.01)  # a failing target must not become a busy loop
                continue
            done += 1
            if window_start <= now + whole <= window_end:
                latencies.append(whole)
                ttfbs.append(first)

    await asyncio.gather(*(worker() for _ in range(workers)))
    completed = len(latencies)
    return {
        "rps": round(completed / duration_s, 1),
        "completed": completed,
        "requests": done,
        "duration_s": duration_s,
        "concurrency": workers,
        "latency": summary(latencies),
        "ttfb": summary(ttfbs),
        "errors": errors.count,
        "first_error": errors.first,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body = json.dumps({**PAYLOAD, "stream": True} if args.stream else PAYLOAD).encode()
    limit = 1 if args.mode == "seq" else args.concurrency
    timeout_s = REQUEST_TIMEOUT_S
    if args.client == "httpx":
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        client = httpx.AsyncClient(limits=limits, timeout=timeout_s, trust_env=False)
        call = httpx_call(client, args.url, body, args.stream)
        closer: Callable[[], Awaitable[None]] = client.aclose
    elif args.client == "http1":
        parts = urlsplit(args.url)
        pool = HTTPPool(f"{parts.scheme}://{parts.netloc}", headers=HEADERS, limit=limit)
        call = http1_call(pool, parts.path, body, args.stream)
        closer = pool.close
    else:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
        call = aiohttp_call(session, args.url, body, args.stream)
        closer = session.close
    try:
        if args.mode == "seq":
            return await sequential(call, args.count, args.warmup, args.max_seconds)
        return await concurrent(call, args.concurrency, args.warmup_seconds, args.duration)
    finally:
        await closer()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--mode", choices=["seq", "conc"], required=True)
    parser.add_argument("--client", choices=["aiohttp", "httpx", "http1"], default="aiohttp")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--count", type=int, default=1000, help="seq: measured requests")
    parser.add_argument("--warmup", type=int, default=100, help="seq: unmeasured requests first")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="seq: time bound")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="conc: measured seconds")
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
