"""Start-up time of ``moe serve`` on the embedded default configuration (no config file).

Each run spawns ``moe serve --port N`` on a free loopback port and measures, from the spawn:

* ``live``: the first 200 from ``/health/live`` (the process answers; the requirement is under
  a second), polled every 10 ms from this process, which shares nothing with the server;
* ``ready``: the first 200 from ``/health`` (the gate and experts have loaded their models),
  polled every 50 ms, unless ``--skip-ready``.

The server is stopped (SIGTERM to its process group) after each run. The figures are for a warm
file cache: the first run reads the installed packages and model files from disk at most once,
later ones find them in memory, and the page cache is never dropped. The server inherits this
process's environment, so ``PYTHONDONTWRITEBYTECODE`` (recorded in the results) decides whether
the project's own modules are compiled from source at every start, a large part of the time.
On a shared machine the times are noisy: min, median and max over ``--runs`` are reported.

    make bench-startup [ARGS="--runs 10 --skip-ready --check"]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_io import write_results
from servers import Server

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "startup.json"
MOE = Path(sys.executable).parent / "moe"
LIVE_BAR_S = 1.0  # the median time to the first /health/live must stay under this
LIVE_POLL_S = 0.01
READY_POLL_S = 0.05
BYTECODE_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")  # recorded with the results


def status(port: int, path: str) -> int | None:
    """The status of one GET, or None while nothing answers. A refused connection fails at once;
    one that is accepted waits for its answer, as a load balancer's probe would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_for(server: Server, path: str, poll_s: float, deadline: float) -> float:
    """The monotonic time of the first 200 from ``path``."""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"moe serve exited ({server.proc.returncode}): {server.tail()}")
        if status(server.port, path) == 200:
            return time.monotonic()
        time.sleep(poll_s)
    raise RuntimeError(f"no 200 from {path} in time: {server.tail()}")


def run(workdir: Path, ready_timeout_s: float, skip_ready: bool) -> dict[str, float | None]:
    """One start of the server: seconds from the spawn to live and to ready."""
    argv = [str(MOE), "serve", "--port", "{port}"]
    started = time.monotonic()
    # MOE_CONFIG empty: the embedded default, whatever the caller's environment says.
    with Server("moe", argv, "/health", workdir, MOE_CONFIG="") as server:
        live = wait_for(server, "/health/live", LIVE_POLL_S, started + ready_timeout_s)
        ready = None
        if not skip_ready:
            ready = wait_for(server, "/health", READY_POLL_S, started + ready_timeout_s)
    return {"live_s": live - started, "ready_s": None if ready is None else ready - started}


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "all": [round(value, 4) for value in values],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="starts to measure (default: 5)")
    parser.add_argument("--skip-ready", action="store_true", help="do not wait for /health")
    parser.add_argument(
        "--ready-timeout", type=float, default=180.0, help="seconds per run (default: 180)"
    )
    parser.add_argument("--check", action="store_true", help=f"exit 1 if live > {LIVE_BAR_S}s")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="moe-startup-") as tmp:
        for index in range(args.runs):
            try:
                result = run(Path(tmp), args.ready_timeout, args.skip_ready)
            except RuntimeError as exc:
                print(f"startup: error: {exc}", file=sys.stderr)
                return 2
            runs.append(result)
            line = f"  run {index + 1}: live {result['live_s']:.3f}s"
            if result["ready_s"] is not None:
                line += f"  ready {result['ready_s']:.2f}s"
            print(line, file=sys.stderr, flush=True)
    live = spread([r["live_s"] for r in runs if r["live_s"] is not None])
    ready = None if args.skip_ready else spread([r["ready_s"] for r in runs if r["ready_s"]])
    report = {
        "command": "moe serve --port N (embedded default configuration)",
        "runs": args.runs,
        "file_cache": "warm",
        "environment": {name: os.environ.get(name) for name in BYTECODE_ENV},
        "loadavg": os.getloadavg(),
        "live_s": live,
        "ready_s": ready,
        "live_bar_s": LIVE_BAR_S,
    }
    for name, figures in (("live", live), ("ready", ready)):
        if figures:
            print(
                f"{name:5}  min {figures['min']:.3f}s  median {figures['median']:.3f}s  "
                f"max {figures['max']:.3f}s  (n={args.runs})"
            )
    write_results(report, args.out)
    return 1 if args.check and live["median"] > LIVE_BAR_S else 0


if __name__ == "__main__":
    sys.exit(main())
