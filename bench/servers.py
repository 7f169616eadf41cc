"""The servers the overhead benchmarks run, as subprocesses on free loopback ports, and the load
generator that drives them (bench/loadgen.py, in a process of its own).

Each server runs in its own process group, so that stopping it stops its children (LiteLLM's
worker, the gateway's ``--workers``), and is stopped on exit, error or interrupt. The CPU time a
whole group spent is read from /proc, so a trial can tell where the time went when client,
gateway and upstream share two cores.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as metadata
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Result = dict[str, Any]  # one load-generator run as bench/loadgen.py prints it
BENCH = Path(__file__).resolve().parent
# Loopback only: no proxy from the environment may reroute a request.
CHILD_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
CHILD_ENV["NO_PROXY"] = CHILD_ENV["no_proxy"] = "127.0.0.1,localhost"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess in its own process group, so that stopping it stops its children.
    A context manager: leaving the block stops it, whatever happened inside."""

    def __init__(self, name: str, argv: list[str], ready_path: str, workdir: Path, **env: str):
        self.name, self.port = name, free_port()
        port = self.port
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

    def wait_listening(self, sockets: int, timeout_s: float) -> None:
        """Wait until ``sockets`` sockets listen on the port: with ``--workers`` the port answers
        as soon as one worker does, and a load generator's kept-alive connections would all go
        to that one if it started before the others listened."""
        deadline = time.monotonic() + timeout_s
        while listening(self.port) < sockets:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {sockets} workers not listening: {self.tail()}")
            time.sleep(0.2)

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


def listening(port: int) -> int:
    """How many sockets listen on a loopback TCP ``port``, from /proc/net/tcp."""
    wanted = f":{port:04X}"
    count = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            count += fields[1].endswith(wanted) and fields[3] == "0A"  # 0A: LISTEN
    return count


def start_upstream(workdir: Path, *, wrap: Sequence[str] = (), name: str = "upstream") -> Server:
    """The fake upstream; ``wrap`` runs it under another program (callgrind)."""
    argv = [*wrap, sys.executable, "-m", "moe_openai_compat.testing", "--port", "{port}"]
    return Server(name, argv, "/v1/models", workdir)


def start_gateway(
    workdir: Path,
    upstream: Server,
    *,
    name: str = "gateway",
    workers: int = 1,
    metrics: bool = False,
    wrap: Sequence[str] = (),
    ready_path: str = "/health",
    source: Path | None = None,
) -> Server:
    """The gateway as deployed, minus the per-request access log (which LiteLLM lacks too), with
    the one plugin its configuration uses (moe-openai-compat): every other installed plugin is
    disabled, as it would be absent from a deployment that does not use it; ``metrics`` keeps
    moe-metrics, which counts every request once installed, to measure what it costs.
    ``source``: another checkout of the repository whose code runs instead of this one's (its
    core and plugin sources go first on ``PYTHONPATH``; the installed entry points stay)."""
    keep = {"openai-compat", *(["metrics"] if metrics else [])}
    installed = {entry.name for entry in metadata.entry_points(group="moe")}
    config = workdir / f"{name}.yaml"
    config.write_text(
        "server: {host: 127.0.0.1, access_log: false, log_level: warning}\n"
        f'experts: {{upstream: {{kind: openai, base_url: "{upstream.url}/v1", '
        "model: fake-model}}\n"
        "gate: {kind: fixed, expert: upstream}\n"
        "trackers: {memory: {kind: memory}}\n"
        f"plugins: {{disable: {json.dumps(sorted(installed - keep))}}}\n"
    )
    argv = [*wrap, sys.executable, "-m", "moe_core.cli", "serve", "--config", str(config)]
    argv += ["--port", "{port}", "--workers", str(workers), "--log-format", "json"]
    env = {} if source is None else {"PYTHONPATH": os.pathsep.join(sources(source))}
    return Server(name, argv, ready_path, workdir, **env)


def sources(checkout: Path) -> list[str]:
    """The folders holding the core's and every plugin's packages in a checkout."""
    plugins = sorted(str(path) for path in checkout.glob("plugins/*/src") if path.is_dir())
    return [str(checkout), *plugins]


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
