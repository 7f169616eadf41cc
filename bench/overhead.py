"""Gateway overhead: what the moe gateway adds on top of its upstream, next to the LiteLLM proxy.

The targets answer the same request from the same fake upstream (moe_openai_compat.testing): the
upstream itself ("direct"), the moe gateway in front of it with one worker ("gateway"), the same
gateway with two (``moe serve --workers 2``: "gateway_2w"), the one-worker gateway with
moe-metrics counting every request ("gateway_metrics"), and the LiteLLM proxy (one worker). For
direct, gateway and LiteLLM: sequential latency and, streamed, time to the first byte (both
"added" over direct). For every target: throughput at 32 concurrent clients, answers in one piece
and streamed, and the CPU each process spent per request. A client micro-benchmark (aiohttp,
httpx and the ``openai`` expert's own ``http1`` client against the upstream) backs the choice of
that client.

All servers run at once (bench/servers.py), so that the throughput trials can be interleaved:
each round visits every target, in a rotating order, and a noisy neighbour on a small machine
hurts them all alike; an idle server costs nothing. A ratio is given twice: best round against
best round (noise only ever slows a trial down), and as the range of the ratios within each round
(the two targets measured a few seconds apart), which shows how much of it the machine's noise
could have made. Beside the scaling of two workers over one stands its ceiling on this machine:
the cores the one-worker run already kept busy, gateway, upstream and load generator together,
against the cores there are.

    make bench-overhead [ARGS="--quick --skip-litellm --skip-scaling --skip-metrics --check"]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as metadata
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from results_io import write_results
from servers import Server, loadgen, start_gateway, start_litellm, start_upstream, with_cpu

Result = dict[str, Any]  # one load-generator run as bench/loadgen.py prints it, or a group of them
Results = dict[str, Result]  # by target or by client
Row = dict[str, float | None]  # the headline figures of one target
Log = Callable[[str], None]
BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent  # the gateway's venv (bench/metrics_cost.py reads it here)
RESULTS = BENCH / "results" / "overhead.json"
SEQUENTIAL = ("direct", "gateway", "litellm")  # the targets whose latency is measured too
RATIOS = {  # name: (target, baseline), each for rps and stream_rps
    "gateway_over_direct": ("gateway", "direct"),
    "gateway_over_litellm": ("gateway", "litellm"),
    "workers_2_over_1": ("gateway_2w", "gateway"),
    "metrics_on_over_off": ("gateway_metrics", "gateway"),
}


@dataclass(frozen=True)
class Plan:
    """How much to measure; --quick trades precision for a run of about two minutes."""

    seq_n: int = 2000
    seq_n_litellm: int = 300  # LiteLLM is ~15 ms a request: 300 already take seconds
    duration_s: float = 5.0
    rounds: int = 3
    concurrency: int = 32


QUICK = Plan(seq_n=300, seq_n_litellm=60, duration_s=2.0, rounds=2)


def measure(targets: dict[str, Server], plan: Plan, log: Log) -> Results:
    """A warm-up of every target, sequential runs, then throughput rounds interleaved across
    targets; non-streaming first, then streaming."""
    out: Results = {name: {} for name in targets}
    names, servers = list(targets), list({s.name: s for s in targets.values()}.values())
    conc = {"mode": "conc", "duration": plan.duration_s, "concurrency": plan.concurrency}
    for stream, kind in ((False, "plain"), (True, "stream")):
        for name, server in targets.items():
            # Every worker's first requests, and the code paths, warmed before anything counts.
            loadgen(server.url, stream, mode="conc", duration=1, concurrency=plan.concurrency)
            if name not in SEQUENTIAL:
                continue
            n = plan.seq_n_litellm if name == "litellm" else plan.seq_n
            log(f"  {kind:6} sequential  {name} (n={n})")
            seq = loadgen(server.url, stream, mode="seq", count=n, warmup=max(20, n // 10))
            out[name][f"{kind}_seq"] = seq
        for round_ in range(plan.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                log(f"  {kind:6} c={plan.concurrency} round {round_ + 1}  {name}")
                result = with_cpu(servers, targets[name].url, stream, **conc)
                out[name].setdefault(f"{kind}_conc", []).append(result)
    return out


def client_choice(upstream: Server, plan: Plan, log: Log) -> Results:
    """aiohttp, httpx and http1 as the client of an OpenAI-compatible upstream, the expert's
    one job: the cheaper the client, the more of the two cores is left for the upstream."""
    out: Results = {}
    conc = {"mode": "conc", "duration": plan.duration_s, "concurrency": plan.concurrency}
    for client in ("aiohttp", "httpx", "http1"):
        log(f"  client {client}")
        seq = loadgen(upstream.url, mode="seq", count=plan.seq_n, client=client)
        trials = [loadgen(upstream.url, client=client, **conc) for _ in range(plan.rounds)]
        figures = {"seq_p50_ms": pick(seq, "latency", "p50_ms"), "rps": best_rps(trials)}
        out[client] = {**figures, "seq": seq, "conc": trials}
    return out


def pick(result: Any, *keys: str) -> float | None:
    for key in keys:
        result = result.get(key) if isinstance(result, dict) else None
    return result if isinstance(result, (int, float)) else None


def best_rps(trials: list[Result]) -> float | None:
    """The best round: noise on a shared machine only ever slows a trial down."""
    values = [v for t in trials if (v := pick(t, "rps")) is not None and not t.get("errors")]
    return max(values) if values else None


def median_cpu(trials: list[Result], server: str) -> float | None:
    values = sorted(v for t in trials if (v := pick(t, "cpu_us_per_request", server)))
    return values[len(values) // 2] if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def minus(a: float | None, b: float | None) -> float | None:
    return round(a - b, 4) if a is not None and b is not None else None


def summarise(raw: Results, servers: dict[str, str]) -> dict[str, Row]:
    """The headline figures per target (``servers``: the process serving each): the table's
    rows and the bars' inputs."""
    rows: dict[str, Row] = {}
    for name, result in raw.items():
        if "error" in result:
            continue
        plain, stream = result.get("plain_seq"), result.get("stream_seq")
        rows[name] = {
            "seq_p50_ms": pick(plain, "latency", "p50_ms"),
            "seq_p99_ms": pick(plain, "latency", "p99_ms"),
            "rps": best_rps(result["plain_conc"]),
            "ttfb_p50_ms": pick(stream, "ttfb", "p50_ms"),
            "ttfb_p99_ms": pick(stream, "ttfb", "p99_ms"),
            "stream_rps": best_rps(result["stream_conc"]),
            "cpu_us_per_req": median_cpu(result["plain_conc"], servers[name]),
            "stream_cpu_us_per_req": median_cpu(result["stream_conc"], servers[name]),
        }
    direct = rows.get("direct", {})
    for row in rows.values():
        row["added_p50_ms"] = minus(row["seq_p50_ms"], direct.get("seq_p50_ms"))
        row["added_ttfb_p50_ms"] = minus(row["ttfb_p50_ms"], direct.get("ttfb_p50_ms"))
    return rows


def ratios(
    rows: dict[str, Row], raw: Results, pairs: dict[str, tuple[str, str]] = RATIOS
) -> dict[str, Any]:
    """Each pair's ratio, best round against best round, and ``<name>_rounds``: the ratio within
    each round, where both targets were measured within seconds (None for a failed trial)."""
    out: dict[str, Any] = {}
    for name, (target, baseline) in pairs.items():
        for key, phase in (("rps", "plain_conc"), ("stream_rps", "stream_conc")):
            out[f"{name}_{key}"] = ratio(
                rows.get(target, {}).get(key), rows.get(baseline, {}).get(key)
            )
            trials = (raw.get(target, {}).get(phase, []), raw.get(baseline, {}).get(phase, []))
            out[f"{name}_{key}_rounds"] = [
                None
                if a.get("errors") or b.get("errors")
                else ratio(pick(a, "rps"), pick(b, "rps"))
                for a, b in zip(*trials, strict=False)
            ]
    return out


def scaling_ceiling(raw: Results, phase: str) -> dict[str, float] | None:
    """How much more throughput any number of workers could give on this machine, from the
    one-worker gateway's best round: the cores every process kept busy then (gateway, upstream
    and load generator, from their CPU time per request), and the cores there are. When one
    worker already keeps most of them busy, a second can only share them; its own switching
    costs make the true ceiling lower still."""
    trials = [t for t in raw.get("gateway", {}).get(phase, []) if not t.get("errors")]
    best = max(trials, key=lambda t: pick(t, "rps") or 0.0, default=None)
    spent = best.get("cpu_us_per_request") if best else None
    if not best or not spent or not best.get("rps"):
        return None
    busy = sum(spent.values()) * best["rps"] / 1e6
    cores = os.cpu_count() or 1
    return {"busy_cores": round(busy, 2), "cores": cores, "ceiling": round(cores / busy, 3)}


def bars(rows: dict[str, Row], over: dict[str, Any]) -> list[Result]:
    """The team's bars, judged on the figures as measured: none is tuned to pass."""
    gateway = rows.get("gateway", {})
    added, added_ttfb = gateway.get("added_p50_ms"), gateway.get("added_ttfb_p50_ms")
    checks = [  # (bar, value, bound, +1: the value must reach the bound, -1: stay under it)
        ("gateway added p50 <= 1 ms (sequential, non-streaming)", added, 1, -1),
        ("gateway added TTFB p50 <= 1 ms (sequential, streaming)", added_ttfb, 1, -1),
        ("gateway rps >= 0.5 x direct rps (32 clients)", over["gateway_over_direct_rps"], 0.5, 1),
        ("gateway stream rps >= 0.5 x direct stream rps (32 clients)",
         over["gateway_over_direct_stream_rps"], 0.5, 1),
        ("2 workers >= 1.3 x 1 worker rps (32 clients, same upstream)",
         over["workers_2_over_1_rps"], 1.3, 1),
        ("gateway rps >= 20 x LiteLLM rps (one worker each)", over["gateway_over_litellm_rps"],
         20, 1),
    ]  # fmt: skip
    return [
        {"bar": bar, "value": value,
         "result": "N/A" if value is None else "PASS" if (value - bound) * sign >= 0 else "FAIL"}
        for bar, value, bound, sign in checks
    ]  # fmt: skip


def versions() -> dict[str, str | None]:
    """What was measured: the client and server libraries, LiteLLM, the gateway's commit."""
    found: dict[str, str | None] = {}
    for package in ("moe-core", "aiohttp", "httpx", "uvloop"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    found["litellm"] = None
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    argv = [str(BENCH / ".venv-litellm" / "bin" / "python"), "-c", probe]
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        found["litellm"] = done.stdout.strip() or None
    git = ["git", "-C", str(BENCH.parent)]  # the gateway measured is the working tree's
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "moe_core", "plugins"],
                               capture_output=True, text=True)  # fmt: skip
        found["git"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return found


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(rows: dict[str, Row], raw: Results, over: dict[str, Any], clients: Results,
                 checks: list[Result]) -> None:  # fmt: skip
    """The table (added_* is against direct), any failures, the ratios, the client choice, the
    bars."""
    columns = {"seq_p50_ms": "p50 ms", "added_p50_ms": "+p50 ms", "rps": "rps",
               "cpu_us_per_req": "CPU us", "ttfb_p50_ms": "TTFB p50",
               "added_ttfb_p50_ms": "+TTFB p50", "stream_rps": "stream rps",
               "stream_cpu_us_per_req": "CPU us"}  # fmt: skip
    print("\nnon-streaming: p50 sequential, +p50 added over direct, rps at 32 clients, CPU us")
    print("its server spent per request; streaming: the same, TTFB for latency")
    print(f"{'':16}" + "".join(f"{title:>11}" for title in columns.values()))
    for name in raw:
        if name not in rows:
            print(f"{name:16}  ERROR: {raw[name]['error']}")
            continue
        cells = (fmt(rows[name][key], 3 if key.endswith("_ms") else 0) for key in columns)
        print(f"{name:16}" + "".join(f"{cell:>11}" for cell in cells))
    for name, phases in raw.items():
        for phase, result in phases.items():
            for run in result if isinstance(result, list) else [result]:
                if isinstance(run, dict) and (run.get("error") or run.get("errors")):
                    print(f"  note: {name} {phase}: {run.get('error') or run.get('first_error')}")
    print("\nratios, best round over best round [each round's own]:")
    for name in RATIOS:
        for key in ("rps", "stream_rps"):
            rounds = ", ".join(fmt(value) for value in over[f"{name}_{key}_rounds"])
            print(f"  {name}_{key:11} {fmt(over[f'{name}_{key}']):>7}  [{rounds}]")
    for key in ("rps", "stream_rps"):
        if ceiling := over.get(f"workers_ceiling_{key}"):
            print(f"  workers_ceiling_{key:11} {fmt(ceiling['ceiling']):>4}  (one worker kept "
                  f"{ceiling['busy_cores']} of the {ceiling['cores']} cores busy)")  # fmt: skip
    print("\nclient choice, against the upstream directly:")
    for client, got in clients.items():
        print(f"  {client:8} sequential p50 {fmt(got['seq_p50_ms'])} ms, {fmt(got['rps'], 0)} rps")
    print()
    for check in checks:
        print(f"  {check['result']:4}  {check['bar']}  (measured: {fmt(check['value'])})")


def run_all(args: argparse.Namespace, plan: Plan, log: Log) -> tuple[Results, Results]:
    """Start the servers, measure everything, stop them; a target that cannot start (LiteLLM,
    moe-metrics not installed) is reported, not fatal."""
    raw: Results = {}
    with tempfile.TemporaryDirectory(prefix="moe-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        upstream = stack.enter_context(start_upstream(work))
        upstream.wait_ready(60)
        gateway = stack.enter_context(start_gateway(work, upstream))
        targets = {"direct": upstream, "gateway": gateway}
        if args.skip_scaling:
            raw["gateway_2w"] = {"error": "skipped (--skip-scaling)"}
        else:
            targets["gateway_2w"] = stack.enter_context(
                start_gateway(work, upstream, name="gateway_2w", workers=2)
            )
        installed = {entry.name for entry in metadata.entry_points(group="moe")}
        if args.skip_metrics or "metrics" not in installed:
            why = "skipped (--skip-metrics)" if args.skip_metrics else "moe-metrics not installed"
            raw["gateway_metrics"] = {"error": why}
        else:
            targets["gateway_metrics"] = stack.enter_context(
                start_gateway(work, upstream, name="gateway_metrics", metrics=True)
            )
        for name, server in targets.items():
            server.wait_ready(120)
            server.wait_listening(2 if name == "gateway_2w" else 1, 60)
        if args.skip_litellm:
            raw["litellm"] = {"error": "skipped (--skip-litellm)"}
        else:
            log("starting LiteLLM (installs bench/.venv-litellm on first use)")
            try:
                litellm = stack.enter_context(start_litellm(work, upstream))
                litellm.wait_ready(180)
                targets["litellm"] = litellm
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                log(f"LiteLLM unavailable, measuring without it: {exc}")
                raw["litellm"] = {"error": f"LiteLLM unavailable: {exc}"[:2000]}
        log(f"measuring {', '.join(targets)} ({'quick' if args.quick else 'full'} plan)")
        measured = measure(targets, plan, log)
        raw = {name: measured.get(name) or raw[name] for name in (*targets, *raw)}
        return raw, client_choice(upstream, plan, log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, rougher figures")
    parser.add_argument("--skip-litellm", action="store_true", help="do not install/run LiteLLM")
    parser.add_argument("--skip-scaling", action="store_true", help="no 2-worker gateway")
    parser.add_argument("--skip-metrics", action="store_true", help="no gateway with metrics")
    parser.add_argument("--check", action="store_true", help="exit 1 when a bar fails")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the servers stop
    load_before = os.getloadavg()
    try:
        raw, clients = run_all(args, plan, lambda line: print(line, file=sys.stderr, flush=True))
    except RuntimeError as exc:  # the upstream or a gateway did not come up
        print(f"overhead: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the servers are stopped by now
        print("overhead: interrupted", file=sys.stderr)
        return 130
    servers = {"direct": "upstream"}
    rows = summarise(raw, {name: servers.get(name, name) for name in raw})
    over = ratios(rows, raw)
    for key, phase in (("rps", "plain_conc"), ("stream_rps", "stream_conc")):
        over[f"workers_ceiling_{key}"] = scaling_ceiling(raw, phase)
    checks = bars(rows, over)
    print_report(rows, raw, over, clients, checks)
    machine = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "loadavg_before": load_before,
               "loadavg_after": os.getloadavg()}  # fmt: skip
    report = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "versions": versions(),
        "plan": {**asdict(plan), "quick": args.quick},
        "summary": rows,
        "ratios": over,
        "bars": checks,
        "client_choice": clients,
        "raw": raw,
    }
    write_results(report, args.out)
    return 1 if args.check and any(check["result"] == "FAIL" for check in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
