"""``moe serve --workers N``: N gateway processes on one port, under a small supervisor.

Each worker is an ordinary ``moe serve`` that binds the port with ``SO_REUSEPORT``, so the kernel
spreads connections over them and no process hands sockets around. The supervisor only starts
them, restarts one that dies (unless it keeps dying right after starting: then the problem is
the configuration, and the supervisor stops with the worker's exit code), and forwards signals:
SIGTERM or SIGINT drain every worker gracefully (each finishes its requests within
``shutdown_timeout_s``), SIGHUP makes every worker reload its configuration.

Workers share nothing in memory: trackers that must agree across them (rate limits, breakers,
statistics) need the ``sqlite`` or ``redis`` tracking store. Each worker finds the supervisor in
``$MOE_SUPERVISOR_PID`` (a reload asked of one worker over HTTP reaches the others through it)
and the worker count in ``$MOE_WORKERS``; Prometheus metrics are collected across them in
``$PROMETHEUS_MULTIPROC_DIR``, a fresh folder unless set.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import structlog

log = structlog.get_logger(__name__)
SUPERVISOR_ENV = "MOE_SUPERVISOR_PID"
QUICK_DEATH_S = 5.0
"""A worker that exits sooner than this after starting, three times running, is not retried."""


def worker_count(setting: int | str) -> int:
    """``auto``: one worker per CPU this process may run on."""
    if setting == "auto":
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1
    return int(setting)


def supervise(argv: Sequence[str], workers: int, shutdown_timeout_s: float) -> int:
    """Run ``workers`` copies of ``moe <argv> --reuse-port`` (``argv`` ends with ``serve`` and
    its options) until a signal stops them; the exit status is 0 after a requested stop, else
    the failing worker's."""
    env = dict(os.environ, MOE_WORKERS=str(workers), **{SUPERVISOR_ENV: str(os.getpid())})
    metrics_dir = None
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="moe-metrics-")
    command = [sys.executable, "-m", "moe_core.cli", *argv, "--reuse-port"]
    state = {"stopping": False}

    def start(index: int) -> tuple[subprocess.Popen[bytes], float]:
        process = subprocess.Popen(command, env={**env, "MOE_WORKER": str(index)})
        log.info("worker.started", worker=index, pid=process.pid)
        return process, time.monotonic()

    def stop(signum: int, frame: object) -> None:
        state["stopping"] = True
        for process, _ in children.values():
            process.send_signal(signal.SIGTERM)

    def hangup(signum: int, frame: object) -> None:
        for process, _ in children.values():
            process.send_signal(signal.SIGHUP)

    children = {index: start(index) for index in range(workers)}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hangup)
    quick_deaths, status = 0, 0
    try:
        while not state["stopping"]:
            time.sleep(0.2)
            for index, (process, started) in list(children.items()):
                code = process.poll()
                if code is None or state["stopping"]:
                    continue
                quick_deaths = quick_deaths + 1 if time.monotonic() - started < QUICK_DEATH_S else 0
                log.warning("worker.exited", worker=index, pid=process.pid, code=code)
                if quick_deaths >= 3:
                    log.error("worker.gave_up", worker=index, reason="it died 3 times on start")
                    status = code or 1
                    stop(signal.SIGTERM, None)
                    break
                children[index] = start(index)
        deadline = time.monotonic() + shutdown_timeout_s + 5
        for process, _ in children.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def tell_supervisor_to_reload() -> None:
    """Under a supervisor, have every worker reload (this one reloaded already)."""
    pid = os.environ.get(SUPERVISOR_ENV)
    if pid:
        os.kill(int(pid), signal.SIGHUP)
