"""`moe serve` as a process: graceful shutdown and structured logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx

from tests.conftest import free_port


def _wait_ready(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready in {seconds} s")


def test_sigterm_lets_in_flight_requests_finish_and_logs_are_json(tmp_path):
    upstream_port, gateway_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moe_openai_compat.testing",
            "--port",
            str(upstream_port),
            "--delay",
            "1.0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp_path / "moe.yaml"
    config.write_text(
        f"experts:\n  slow: {{kind: openai, base_url: 'http://127.0.0.1:{upstream_port}/v1'}}\n"
    )
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moe_core.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(gateway_port),
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        _wait_ready(f"http://127.0.0.1:{gateway_port}/health", gateway)
        outcome: dict = {}

        def ask() -> None:
            outcome["response"] = httpx.post(
                f"http://127.0.0.1:{gateway_port}/v1/chat/completions",
                timeout=30,
                headers={"X-Request-Id": "in-flight-1"},
                json={"messages": [{"role": "user", "content": "still there?"}]},
            )

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.4)  # the request is now waiting on the 1 s upstream
        gateway.send_signal(signal.SIGTERM)
        asker.join(timeout=30)
        response = outcome["response"]
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "echo: still there?"
        assert gateway.wait(timeout=30) == 0
        lines = [json.loads(line) for line in gateway.stderr.read().splitlines() if line.strip()]
        access = [
            line
            for line in lines
            if line.get("event") == "http.request" and line.get("path") == "/v1/chat/completions"
        ]
        assert access and access[0]["request_id"] == "in-flight-1"
        assert access[0]["status"] == 200 and access[0]["level"] == "info"
    finally:
        for process in (gateway, upstream):
            if process.poll() is None:
                process.kill()
