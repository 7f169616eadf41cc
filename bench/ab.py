"""The gateway of another revision against this tree's, measured in one run.

On a shared machine throughput moves by tens of percent from one minute to the next, so figures
from different runs cannot tell whether a change made the gateway slower. This starts the fake
upstream (moe_openai_compat.testing), the gateway as bench/overhead.py runs it from a checkout
of ``--base`` (a git worktree in a temporary folder, removed afterwards) and the same gateway
from this tree, and measures both as bench/overhead.py measures its targets: interleaved rounds,
each visiting both in turn, in one piece and streamed. It reports the best round of each, the
ratio within each round (the two measured seconds apart), and each gateway's CPU per request
(the median round), which noise moves less than throughput.

The base runs this tree's installed entry points with its own sources first on ``PYTHONPATH``,
so it must need the same distributions installed: a revision a few commits back does.

    make bench-ab ARGS="--base HEAD~3 [--metrics] [--rounds 5] [--seconds 4]"
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from overhead import Plan, measure, ratios, summarise, versions
from results_io import write_results
from servers import start_gateway, start_upstream

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "ab.json"
PAIR = {"tree_over_base": ("tree", "base")}


@contextlib.contextmanager
def worktree(rev: str, folder: Path) -> Iterator[Path]:
    """A checkout of ``rev`` in ``folder``, removed on the way out."""
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", "-q", str(folder), rev], check=True)
    try:
        yield folder
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(folder)], check=False)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    parser.add_argument("--metrics", action="store_true", help="both gateways with moe-metrics")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="each trial's length")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", args.base + "^{commit}"],
                         capture_output=True, text=True)  # fmt: skip
    if rev.returncode != 0:
        print(f"ab: not a revision: {args.base}", file=sys.stderr)
        return 2
    commit = rev.stdout.strip()
    plan = Plan(duration_s=args.seconds, rounds=args.rounds, concurrency=args.concurrency)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the servers stop
    with tempfile.TemporaryDirectory(prefix="moe-ab-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        base = stack.enter_context(worktree(commit, work / "checkout"))
        upstream = stack.enter_context(start_upstream(work))
        upstream.wait_ready(60)
        targets = {
            "base": start_gateway(work, upstream, name="base", metrics=args.metrics, source=base),
            "tree": start_gateway(work, upstream, name="tree", metrics=args.metrics),
        }
        for server in targets.values():
            stack.enter_context(server).wait_ready(120)
        raw = measure(targets, plan, lambda line: print(line, file=sys.stderr, flush=True))
    rows = summarise(raw, {name: name for name in targets})
    over = ratios(rows, raw, PAIR)
    print(f"\n{args.base} ({commit[:10]}) against this tree, best round of {args.rounds}, "
          f"{args.concurrency} clients:")  # fmt: skip
    for key, cpu in (("rps", "cpu_us_per_req"), ("stream_rps", "stream_cpu_us_per_req")):
        rounds = ", ".join(fmt(r) for r in over[f"tree_over_base_{key}_rounds"])
        print(f"  {key:10} {rows['base'][key]} -> {rows['tree'][key]}: "
              f"{fmt(over[f'tree_over_base_{key}'])}x [{rounds}]; "
              f"CPU {rows['base'][cpu]} -> {rows['tree'][cpu]} us a request")  # fmt: skip
    report = {"base": args.base, "base_commit": commit, "metrics": args.metrics,
              "versions": versions(), "summary": rows, "ratios": over, "raw": raw}  # fmt: skip
    write_results(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
