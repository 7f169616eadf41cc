"""Gateway overhead: what the moe gateway adds on top of its upstream, next to the LiteLLM proxy.

Three targets answer the same request from the same fake upstream (moe_openai_compat.testing):
the upstream itself ("direct"), the moe gateway in front of it, and the LiteLLM proxy in front of
it, each one worker. For each: sequential latency, throughput at 32 concurrent clients, and the
same two for streaming (time to first byte). A client micro-benchmark (aiohttp, httpx and the
``openai`` expert's own ``http1`` client against the upstream) backs the choice of that client.

All servers run at once as subprocesses on free loopback ports, so that the throughput trials can
be interleaved (each round visits every target, in a rotating order) and a noisy neighbour on a
small machine hurts them all alike; an idle server costs nothing. Load comes from bench/loadgen.py
in a separate process. Each throughput trial also records the CPU time every process spent per
request, which says where the time goes when two cores are shared by client, proxy and upstream.
Every subprocess is stopped on exit, error or interrupt.

    make bench-overhead [ARGS="--quick --skip-litellm --check"]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as metadata
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Result = dict[str, Any]  # one load-generator run as bench/loadgen.py prints it, or a group of them
Results = dict[str, Result]  # by target or by client
Row = dict[str, float | None]  # the headline figures of one target
Log = Callable[[str], None]
BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent  # the gateway's venv: `moe` lives beside this python
RESULTS = BENCH / "results" / "overhead.json"
SERVER_OF = {"direct": "upstream", "gateway": "gateway", "litellm": "litellm"}  # target: process
# Loopback only: no proxy from the environment may reroute a request.
CHILD_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
CHILD_ENV["NO_PROXY"] = CHILD_ENV["no_proxy"] = "127.0.0.1,localhost"


@dataclass(frozen=True)
class Plan:
    """How much to measure; --quick trades precision for a run of about a minute."""

    seq_n: int = 2000
    seq_n_litellm: int = 300  # LiteLLM is ~15 ms a request: 300 already take seconds
    duration_s: float = 5.0
    rounds: int = 3
    concurrency: int = 32


QUICK = Plan(seq_n=300, seq_n_litellm=60, duration_s=2.0, rounds=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess in its own process group, so that stopping it stops its children.
    A context manager: leaving the block stops it, whatever happened inside."""

    def __init__(self, name: str, argv: list[str], ready_path: str, workdir: Path, **env: str):
        self.name, port = name, free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.ready_url = self.url + ready_path
        self.log = workdir / f"{name}.log"
        argv = [part.replace("{port}", str(port)) for part in argv]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=log, cwd=workdir, env={**CHILD_ENV, **env},
                start_new_session=True,
            )  # fmt: skip

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.ready_url, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s: {self.tail()}")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return " | ".join(line for line in lines if "WARNING: Location" not in line)[-1200:]

    def cpu_seconds(self) -> float:
        """CPU time of the whole process group (LiteLLM runs a worker child), from /proc."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rpartition(")")[2].split()
                if int(fields[2]) == self.proc.pid:  # pgrp
                    ticks += int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")


def start_upstream(workdir: Path) -> Server:
    argv = [sys.executable, "-m", "moe_openai_compat.testing", "--port", "{port}"]
    return Server("upstream", argv, "/v1/models", workdir)


def start_gateway(workdir: Path, upstream: Server) -> Server:
    """The gateway as deployed, minus the per-request access log (which LiteLLM lacks too)."""
    config = workdir / "moe.yaml"
    config.write_text(
        "server: {host: 127.0.0.1, access_log: false, log_level: warning}\n"
        f'experts: {{upstream: {{kind: openai, base_url: "{upstream.url}/v1", '
        "model: fake-model}}\n"
        "gate: {kind: fixed, expert: upstream}\n"
        "trackers: {memory: {kind: memory}}\n"
    )
    argv = [str(VENV_BIN / "moe"), "serve", "--config", str(config), "--port", "{port}"]
    return Server("gateway", [*argv, "--log-format", "json"], "/health", workdir)


def start_litellm(workdir: Path, upstream: Server) -> Server:
    """LiteLLM as its docs run it, one uvicorn worker, with telemetry, spend logs and the remote
    cost-map fetch off. No master key: the gateway is measured without auth too."""
    setup = ["bash", str(BENCH / "setup_litellm.sh"), sys.executable]
    done = subprocess.run(setup, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "WARNING: Location" not in line]
        raise RuntimeError("installing litellm failed: " + " | ".join(e[:200] for e in errors[-3:]))
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: auto\n    litellm_params: {model: openai/fake-model, "
        f'api_base: "{upstream.url}/v1", api_key: fake}}\n'
        "litellm_settings: {telemetry: false, set_verbose: false}\n"
        "general_settings: {dangerously_permit_weak_or_unset_master_key: true, "
        "disable_spend_logs: true}\n"
    )
    litellm = str(BENCH / ".venv-litellm" / "bin" / "litellm")
    argv = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", "{port}"]
    env = {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return Server("litellm", [*argv, "--num_workers", "1"], "/health/liveliness", workdir, **env)


def loadgen(url: str, stream: bool = False, **options: str | float) -> Result:
    """One measurement in a fresh load-generator process; its failures come back as results."""
    argv = [sys.executable, str(BENCH / "loadgen.py"), url + "/v1/chat/completions"]
    argv += ["--stream"] if stream else []
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=CHILD_ENV)
        if done.returncode != 0:
            return {"error": done.stderr.strip()[-500:]}
        return json.loads(done.stdout)
    except (subprocess.TimeoutExpired, ValueError) as exc:
        return {"error": f"load generator failed: {exc}"}


def with_cpu(servers: list[Server], url: str, stream: bool, **options: str | float) -> Result:
    """A load-generator run that also tells the CPU microseconds each process spent per request:
    on a machine where client, proxy and upstream share two cores, this is where the time goes."""
    before = {server.name: server.cpu_seconds() for server in servers}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load generator, once reaped
    result = loadgen(url, stream, **options)
    spent = {server.name: server.cpu_seconds() - before[server.name] for server in servers}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent["loadgen"] = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    if requests := result.get("requests"):
        result["cpu_us_per_request"] = {k: round(v / requests * 1e6, 1) for k, v in spent.items()}
    return result


def measure(targets: dict[str, Server], plan: Plan, log: Log) -> Results:
    """Sequential runs per target, then throughput rounds interleaved across targets."""
    out: Results = {name: {} for name in targets}
    names, servers = list(targets), list({s.name: s for s in targets.values()}.values())
    conc = {"mode": "conc", "duration": plan.duration_s, "concurrency": plan.concurrency}
    for stream, kind in ((False, "plain"), (True, "stream")):
        for name, server in targets.items():
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


def summarise(raw: Results) -> dict[str, Row]:
    """The headline figures per target: the table's rows and the bars' inputs."""
    rows: dict[str, Row] = {}
    for name, result in raw.items():
        if "error" not in result:
            plain, stream = result["plain_seq"], result["stream_seq"]
            rows[name] = {
                "seq_p50_ms": pick(plain, "latency", "p50_ms"),
                "seq_p99_ms": pick(plain, "latency", "p99_ms"),
                "rps": best_rps(result["plain_conc"]),
                "ttfb_p50_ms": pick(stream, "ttfb", "p50_ms"),
                "ttfb_p99_ms": pick(stream, "ttfb", "p99_ms"),
                "stream_rps": best_rps(result["stream_conc"]),
                "cpu_us_per_req": median_cpu(result["plain_conc"], SERVER_OF[name]),
            }
    direct = rows.get("direct", {})
    for row in rows.values():
        row["added_p50_ms"] = minus(row["seq_p50_ms"], direct.get("seq_p50_ms"))
        row["added_ttfb_p50_ms"] = minus(row["ttfb_p50_ms"], direct.get("ttfb_p50_ms"))
    return rows


def ratios(rows: dict[str, Row]) -> dict[str, float | None]:
    gateway = rows.get("gateway", {})
    return {
        f"gateway_over_{other}_{key}": ratio(gateway.get(key), rows.get(other, {}).get(key))
        for other in ("direct", "litellm")
        for key in ("rps", "stream_rps")
    }


def bars(rows: dict[str, Row]) -> list[Result]:
    """The team's bars, judged on the figures as measured: none is tuned to pass."""
    added = rows.get("gateway", {}).get("added_p50_ms")
    over = ratios(rows)
    direct, litellm = over["gateway_over_direct_rps"], over["gateway_over_litellm_rps"]
    checks = [  # (bar, value, bound, +1: the value must reach the bound, -1: stay under it)
        ("gateway added p50 <= 1 ms (sequential, non-streaming)", added, 1, -1),
        ("gateway rps >= 0.5 x direct rps (32 clients)", direct, 0.5, 1),
        ("gateway rps >= 20 x LiteLLM rps (one worker each)", litellm, 20, 1),
    ]
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


def print_report(rows: dict[str, Row], raw: Results, clients: Results,
                 checks: list[Result]) -> None:  # fmt: skip
    """The table (added_* is against direct), any failures, the client choice, the bars."""
    columns = {"seq_p50_ms": "p50 ms", "seq_p99_ms": "p99 ms", "added_p50_ms": "+p50 ms",
               "rps": "rps", "ttfb_p50_ms": "TTFB p50", "ttfb_p99_ms": "TTFB p99",
               "added_ttfb_p50_ms": "+TTFB p50", "stream_rps": "stream rps",
               "cpu_us_per_req": "CPU us/req"}  # fmt: skip
    print("\nnon-streaming: p50/p99 sequential, +p50 added over direct, rps at 32 clients;")
    print("streaming: TTFB p50/p99 sequential, +TTFB added over direct, rps at 32 clients;")
    print("CPU us/req: CPU time the target's own server spends per non-streaming request")
    print(f"{'':8}" + "".join(f"{title:>11}" for title in columns.values()))
    for name in raw:
        if name not in rows:
            print(f"{name:8}  ERROR: {raw[name]['error']}")
            continue
        cells = (fmt(rows[name][key], 3 if key.endswith("_ms") else 0) for key in columns)
        print(f"{name:8}" + "".join(f"{cell:>11}" for cell in cells))
    for name, phases in raw.items():
        for phase, result in phases.items():
            for run in result if isinstance(result, list) else [result]:
                if isinstance(run, dict) and (run.get("error") or run.get("errors")):
                    print(f"  note: {name} {phase}: {run.get('error') or run.get('first_error')}")
    print("\nclient choice, against the upstream directly:")
    for client, got in clients.items():
        print(f"  {client:8} sequential p50 {fmt(got['seq_p50_ms'])} ms, {fmt(got['rps'], 0)} rps")
    print()
    for check in checks:
        print(f"  {check['result']:4}  {check['bar']}  (measured: {fmt(check['value'])})")


def run_all(args: argparse.Namespace, plan: Plan, log: Log) -> tuple[Results, Results]:
    """Start the servers, measure everything, stop them; LiteLLM failing is not fatal."""
    raw: Results = {}
    with tempfile.TemporaryDirectory(prefix="moe-bench-") as tmp, contextlib.ExitStack() as stack:
        upstream = stack.enter_context(start_upstream(Path(tmp)))
        upstream.wait_ready(60)
        gateway = stack.enter_context(start_gateway(Path(tmp), upstream))
        gateway.wait_ready(60)
        targets = {"direct": upstream, "gateway": gateway}
        if args.skip_litellm:
            raw["litellm"] = {"error": "skipped (--skip-litellm)"}
        else:
            log("starting LiteLLM (installs bench/.venv-litellm on first use)")
            try:
                litellm = stack.enter_context(start_litellm(Path(tmp), upstream))
                litellm.wait_ready(180)
                targets["litellm"] = litellm
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                log(f"LiteLLM unavailable, measuring without it: {exc}")
                raw["litellm"] = {"error": f"LiteLLM unavailable: {exc}"[:2000]}
        log(f"measuring {', '.join(targets)} ({'quick' if args.quick else 'full'} plan)")
        raw = {**measure(targets, plan, log), **raw}
        return raw, client_choice(upstream, plan, log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, rougher figures")
    parser.add_argument("--skip-litellm", action="store_true", help="do not install/run LiteLLM")
    parser.add_argument("--check", action="store_true", help="exit 1 when a bar fails")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the servers stop
    load_before = os.getloadavg()
    try:
        raw, clients = run_all(args, plan, lambda line: print(line, file=sys.stderr, flush=True))
    except RuntimeError as exc:  # the upstream or the gateway did not come up
        print(f"overhead: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the servers are stopped by now
        print("overhead: interrupted", file=sys.stderr)
        return 130
    rows = summarise(raw)
    checks = bars(rows)
    print_report(rows, raw, clients, checks)
    machine = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "loadavg_before": load_before,
               "loadavg_after": os.getloadavg()}  # fmt: skip
    report = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "versions": versions(),
        "plan": {**asdict(plan), "quick": args.quick},
        "summary": rows,
        "ratios": ratios(rows),
        "bars": checks,
        "client_choice": clients,
        "raw": raw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 1 if args.check and any(check["result"] == "FAIL" for check in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
