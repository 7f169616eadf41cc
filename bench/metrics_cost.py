"""What the metrics plugin costs: the gateway's throughput with ``moe-metrics`` on and off.

Two gateways, identical but for moe-metrics being disabled in one, stand in front of the same
fake upstream (moe_openai_compat.testing) as in bench/overhead.py, with the servers, load
generator and CPU accounting of bench/servers.py. Throughput at 32 concurrent clients is measured in
interleaved rounds (each round visits both gateways, in a rotating order) for answers in one
piece and for streams, so that a noisy neighbour on a small machine slows both alike; the best
round of each counts, as noise only ever slows a trial down. The CPU each gateway spends per
request is recorded too: on two cores shared by client, upstream and gateway, that is the figure
the plugin really moves. Last, ``/metrics`` is scraped and its request counter compared with the
requests the load generator completed, so the figures are those of a plugin that counted.

    python bench/metrics_cost.py [--quick] [--check]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from overhead import best_rps, median_cpu, ratio, versions
from prometheus_client.parser import text_string_to_metric_families
from results_io import write_results
from servers import Server, start_gateway, start_upstream, with_cpu

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "metrics.json"
TARGETS = ("metrics_off", "metrics_on")
BAR = 0.95
"""The bar: the gateway with metrics keeps at least 95% of its throughput without them."""


@dataclass(frozen=True)
class Plan:
    duration_s: float = 5.0
    rounds: int = 3
    concurrency: int = 32


QUICK = Plan(duration_s=2.0, rounds=2)


def measure(gateways: dict[str, Server], plan: Plan, log: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {name: {"plain": [], "stream": []} for name in gateways}
    servers = list(gateways.values())
    options = {"mode": "conc", "duration": plan.duration_s, "concurrency": plan.concurrency}
    for round_ in range(plan.rounds):
        for kind in ("plain", "stream"):
            order = list(gateways)[round_ % 2 :] + list(gateways)[: round_ % 2]
            for name in order:
                log(f"  round {round_ + 1} {kind:6} {name}")
                result = with_cpu(servers, gateways[name].url, kind == "stream", **options)
                raw[name][kind].append(result)
    return raw


def scraped_requests(url: str) -> dict[str, float]:
    """``moe_requests_total`` for the chat route, by status, as Prometheus would read it."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "moe_requests_total" and sample.labels.get("route") == (
                "/v1/chat/completions"
            ):
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0.0) + sample.value
    return counts


def summarise(raw: dict[str, Any], counted: dict[str, float]) -> dict[str, Any]:
    rows = {
        name: {
            "rps": best_rps(runs["plain"]),
            "stream_rps": best_rps(runs["stream"]),
            "cpu_us_per_req": median_cpu(runs["plain"], name),
            "stream_cpu_us_per_req": median_cpu(runs["stream"], name),
        }
        for name, runs in raw.items()
    }
    on, off = rows["metrics_on"], rows["metrics_off"]
    sent = sum(
        run.get("requests", 0) for kind in ("plain", "stream") for run in raw["metrics_on"][kind]
    )
    return {
        "rows": rows,
        "on_over_off_rps": ratio(on["rps"], off["rps"]),
        "on_over_off_stream_rps": ratio(on["stream_rps"], off["stream_rps"]),
        "added_cpu_us_per_req": None
        if on["cpu_us_per_req"] is None or off["cpu_us_per_req"] is None
        else round(on["cpu_us_per_req"] - off["cpu_us_per_req"], 1),
        "requests_completed_on": sent,
        "requests_counted_on": counted,
    }


def bars(summary: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for key, what in (("on_over_off_rps", "rps"), ("on_over_off_stream_rps", "stream rps")):
        value = summary[key]
        result = "N/A" if value is None else "PASS" if value >= BAR else "FAIL"
        checks.append(
            {"bar": f"metrics on >= {BAR} x off, {what}", "value": value, "result": result}
        )
    counted = summary["requests_counted_on"].get("200", 0)
    exact = counted == summary["requests_completed_on"]
    checks.append({"bar": "/metrics counts every completed request", "value": counted,
                   "result": "PASS" if exact else "FAIL"})  # fmt: skip
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, rougher figures")
    parser.add_argument("--check", action="store_true", help="exit 1 when a bar fails")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the servers stop

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="moe-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        upstream = stack.enter_context(start_upstream(workdir))
        upstream.wait_ready(60)
        gateways = {
            name: stack.enter_context(
                start_gateway(workdir, upstream, name=name, metrics=name == "metrics_on")
            )
            for name in TARGETS
        }
        for gateway in gateways.values():
            gateway.wait_ready(60)
        if serves_metrics(gateways["metrics_off"].url):
            raise RuntimeError("the gateway without the plugin serves /metrics: no baseline")
        log(f"measuring {', '.join(gateways)} ({'quick' if args.quick else 'full'} plan)")
        raw = measure(gateways, plan, log)
        counted = scraped_requests(gateways["metrics_on"].url)
    summary = summarise(raw, counted)
    checks = bars(summary)
    print_report(summary, checks)
    # On a small shared machine the neighbours' load says how much to trust the figures.
    machine = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
               "loadavg_before": load_before, "loadavg_after": os.getloadavg()}  # fmt: skip
    report = {
        "machine": machine,
        "versions": versions(),
        "plan": {**asdict(plan), "quick": args.quick},
        "summary": summary,
        "bars": checks,
        "raw": raw,
    }
    write_results(report, args.out)
    return 1 if args.check and any(check["result"] == "FAIL" for check in checks) else 0


def serves_metrics(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def print_report(summary: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    columns = ("rps", "stream_rps", "cpu_us_per_req", "stream_cpu_us_per_req")
    print(f"\n{'':12}{'rps':>10}{'stream rps':>12}{'CPU us/req':>12}{'stream CPU':>12}")
    for name, row in summary["rows"].items():
        cells = ["-" if row[key] is None else f"{row[key]:.0f}" for key in columns]
        print(f"{name:12}{cells[0]:>10}{cells[1]:>12}{cells[2]:>12}{cells[3]:>12}")
    print(
        f"\non/off: rps {summary['on_over_off_rps']}, stream rps "
        f"{summary['on_over_off_stream_rps']}, added CPU {summary['added_cpu_us_per_req']} us/req"
    )
    print(f"completed {summary['requests_completed_on']}, counted {summary['requests_counted_on']}")
    for check in checks:
        print(f"  {check['result']:4}  {check['bar']}  (measured: {check['value']})")


if __name__ == "__main__":
    sys.exit(main())
