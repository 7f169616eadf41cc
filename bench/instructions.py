"""Instructions the gateway executes per request, counted by callgrind: a figure noise cannot move.

On a small shared machine requests per second move with the neighbours; the instructions a
process executes for a request do not. This runs the gateway as bench/overhead.py does (``moe
serve`` in front of the fake upstream, driven by bench/loadgen.py at 32 concurrent clients), but
under ``valgrind --tool=callgrind``: after a warm-up the counters are zeroed, the load runs, and
the counters are dumped, so start-up and imports are left out. The total over the requests the
load generator completed is the figure, for streamed and one-piece answers. ``--upstream`` also
counts the fake upstream itself (served directly), the baseline the gateway is compared with;
``--metrics`` also counts a second gateway with moe-metrics on, so that what the plugin costs a
request is a count too, not only a throughput ratio that the machine's noise moves.

Callgrind counts user-space instructions only: system calls (one per socket write) cost CPU it
does not see, which is why bench/overhead.py also records CPU time per request.

    python bench/instructions.py [--upstream] [--metrics] [--seconds 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from overhead import versions
from results_io import write_results
from servers import CHILD_ENV, Server, loadgen, start_gateway, start_upstream

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "instructions.json"
_SUMMARY = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)


def callgrind(workdir: Path, name: str) -> list[str]:
    """The prefix that runs the server ``name`` under callgrind, its dumps in ``workdir``."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir / name}.callgrind.%p"]


def control(pid: int, flag: str) -> None:
    """``callgrind_control -z`` (zero) or ``-d`` (dump) for the process ``pid``."""
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True,
                   timeout=120, env=CHILD_ENV)  # fmt: skip


def counted(server: Server, stream: bool, seconds: float, concurrency: int) -> dict:
    """Instructions per request of ``server`` (under callgrind) while the load generator
    drives it for ``seconds``, after a warm-up that is not counted."""
    for _ in range(10):  # the expert may still be starting: its 503s end the warm-up early
        warm = loadgen(server.url, stream, mode="seq", count=30, warmup=0, max_seconds=120)
        if not (warm.get("error") or warm.get("errors")):
            break
    else:
        raise RuntimeError(f"warm-up failed: {warm}")
    dumps = server.log.parent
    before = set(dumps.glob(f"{server.name}.callgrind.*"))
    control(server.proc.pid, "-z")
    result = loadgen(server.url, stream, mode="conc", duration=seconds, concurrency=concurrency,
                     warmup_seconds=0)  # fmt: skip
    control(server.proc.pid, "-d")
    if result.get("error") or result.get("errors"):
        raise RuntimeError(f"load failed: {result.get('error') or result.get('first_error')}")
    deadline = time.monotonic() + 60
    while not (summary := _dumped(set(dumps.glob(f"{server.name}.callgrind.*")) - before)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: callgrind wrote no dump")
        time.sleep(0.5)
    requests = int(result["requests"])
    return {"requests": requests, "instructions": summary,
            "per_request": round(summary / requests)}  # fmt: skip


def _dumped(new: set[Path]) -> int | None:
    """The instructions a complete new dump counts (its last line is ``totals:``), if any."""
    for dump in new:
        data = dump.read_bytes()
        if data.rstrip().rpartition(b"\n")[2].startswith(b"totals:"):
            return int(_SUMMARY.findall(data)[-1])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", action="store_true", help="also count the upstream alone")
    parser.add_argument("--metrics", action="store_true", help="also count moe-metrics on")
    parser.add_argument("--seconds", type=float, default=20.0, help="load per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--keep", type=Path, help="keep callgrind's dumps in this folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report: dict = {"versions": versions(), "concurrency": args.concurrency,
                    "seconds": args.seconds, "counts": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="moe-callgrind-") as tmp, contextlib.ExitStack() as st:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        upstream = st.enter_context(start_upstream(work))
        upstream.wait_ready(60)
        # Ready when it answers at all: /health would import torch (to report CUDA), which
        # takes minutes under callgrind and is no part of a request.
        wrap = callgrind(work, "gateway")
        gateway = start_gateway(work, upstream, wrap=wrap, ready_path="/health/live")
        targets = [st.enter_context(gateway)]
        if args.metrics:
            wrap = callgrind(work, "gateway_metrics")
            targets.append(st.enter_context(start_gateway(
                work, upstream, name="gateway_metrics", metrics=True, wrap=wrap,
                ready_path="/health/live")))  # fmt: skip
        if args.upstream:
            wrap = callgrind(work, "direct")
            targets.append(st.enter_context(start_upstream(work, wrap=wrap, name="direct")))
        for server in targets:
            server.wait_ready(900)
            for stream in (True, False):
                kind = "stream" if stream else "plain"
                print(f"  {server.name} {kind} under callgrind", file=sys.stderr, flush=True)
                figures = counted(server, stream, args.seconds, args.concurrency)
                report["counts"][f"{server.name}_{kind}"] = figures
                print(f"  {server.name} {kind}: {figures['per_request']:,} instructions a "
                      f"request ({figures['requests']} requests)")  # fmt: skip
    write_results(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
