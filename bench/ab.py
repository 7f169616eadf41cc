"""The gateway of another revision against this tree's, measured in one run.

On a shared machine throughput moves by tens of percent from one minute to the next, so figures
from different runs cannot tell whether a change made the gateway slower. This starts the fake
upstream (moe_openai_compat.testing), the gateway as bench/overhead.py runs it from a checkout
of ``--base`` (a git worktree in a temporary folder, removed afterwards) and the same gateway
from this tree, and measures both in interleaved rounds, each round visiting both in
alternating order, in one piece and streamed. It reports the best round of each, the ratio
within each round (the two measured seconds apart), and each gateway's CPU per request (the
median round), which noise moves less than throughput.

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
from pathlib import Path
from typing import Any

from overhead import best_rps, median_cpu, pick, ratio, versions
from results_io import write_results
from servers import Server, loadgen, start_gateway, start_upstream, with_cpu

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "ab.json"
KINDS = (("plain", False), ("stream", True))


@contextlib.contextmanager
def worktree(rev: str, folder: Path):
    """A checkout of ``rev`` in ``folder``, removed on the way out."""
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", "-q", str(folder), rev], check=True)
    try:
        yield folder
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(folder)], check=False)


def measure(gateways: dict[str, Server], servers: list[Server], args: argparse.Namespace) -> dict:
    """Interleaved rounds of both gateways at 32 clients, after a warm-up of each."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in gateways}
    names = list(gateways)
    for kind, stream in KINDS:
        for server in gateways.values():
            loadgen(server.url, stream, mode="conc", duration=1, concurrency=args.concurrency)
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                print(f"  {kind:6} round {round_ + 1}  {name}", file=sys.stderr, flush=True)
                result = with_cpu(servers, gateways[name].url, stream, mode="conc",
                                  duration=args.seconds, concurrency=args.concurrency)  # fmt: skip
                raw[name].setdefault(kind, []).append(result)
    return raw


def round_ratio(base: dict[str, Any], tree: dict[str, Any]) -> float | None:
    """Tree over base within one round (``None`` when a trial failed)."""
    if base.get("errors") or tree.get("errors"):
        return None
    return ratio(pick(tree, "rps"), pick(base, "rps"))


def summarise(raw: dict) -> dict[str, Any]:
    """Per kind: each gateway's best rps and median CPU, tree over base, and each round's own."""
    out: dict[str, Any] = {}
    for kind, _ in KINDS:
        base, tree = raw["base"][kind], raw["tree"][kind]
        out[kind] = {
            "base_rps": best_rps(base),
            "tree_rps": best_rps(tree),
            "tree_over_base": ratio(best_rps(tree), best_rps(base)),
            "rounds": [round_ratio(a, b) for a, b in zip(base, tree, strict=False)],
            "base_cpu_us": median_cpu(base, "base"),
            "tree_cpu_us": median_cpu(tree, "tree"),
        }
    return out


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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the servers stop
    with tempfile.TemporaryDirectory(prefix="moe-ab-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        base = stack.enter_context(worktree(rev.stdout.strip(), work / "checkout"))
        upstream = stack.enter_context(start_upstream(work))
        upstream.wait_ready(60)
        gateways = {
            "base": start_gateway(work, upstream, name="base", metrics=args.metrics, source=base),
            "tree": start_gateway(work, upstream, name="tree", metrics=args.metrics),
        }
        for server in gateways.values():
            stack.enter_context(server).wait_ready(120)
        raw = measure(gateways, [upstream, *gateways.values()], args)
    figures = summarise(raw)
    print(f"\n{args.base} ({rev.stdout.strip()[:10]}) against this tree, best round of "
          f"{args.rounds}, {args.concurrency} clients:")  # fmt: skip
    for kind, got in figures.items():
        rounds = ", ".join("-" if r is None else f"{r:.3f}" for r in got["rounds"])
        print(f"  {kind:6} {got['base_rps']} -> {got['tree_rps']} rps: "
              f"{got['tree_over_base']}x [{rounds}]; "
              f"CPU {got['base_cpu_us']} -> {got['tree_cpu_us']} us a request")  # fmt: skip
    report = {"base": args.base, "base_commit": rev.stdout.strip(), "metrics": args.metrics,
              "versions": versions(), "figures": figures, "raw": raw}  # fmt: skip
    write_results(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
