"""``moe serve --workers 2``: each worker counts in ``$PROMETHEUS_MULTIPROC_DIR``, and a scrape
answered by either one sums them all."""

from __future__ import annotations

import os
import signal
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import free_port, serving, user, wait_healthy
from tests.plugins.moe_metrics.conftest import parse, total

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")


def writers(metrics_dir) -> set[str]:
    """The processes that counted something: prometheus_client writes a file per process."""
    return {name for name in os.listdir(metrics_dir) if name.startswith("counter_")}


async def fresh(method: str, url: str, **kwargs) -> tuple[int, str]:
    """One request on a new connection, so that the kernel may hand it to either worker."""
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as got:
        return got.status, await got.text()


async def test_a_scrape_sums_every_workers_counts(tmp_path):
    upstream = TestServer(FakeOpenAI(record=False).app(), host="127.0.0.1")
    await upstream.start_server()
    port = free_port()
    config = {
        "server": {"port": port, "workers": 2, "shutdown_timeout_s": 2, "access_log": False},
        "experts": {
            "remote": {"kind": "openai", "base_url": str(upstream.make_url("/v1")), "model": "m"}
        },
        "trackers": {},
    }
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    url = f"http://127.0.0.1:{port}"
    try:
        with serving(config, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as supervisor:
            await wait_healthy(url, timeout_s=90)
            chats = 0
            # Until both workers have answered some (the second may still be starting at first).
            deadline = time.monotonic() + 60
            while chats < 20 or len(writers(metrics_dir)) < 2:
                assert time.monotonic() < deadline, f"one worker answered everything: {chats}"
                status, _ = await fresh("POST", f"{url}/v1/chat/completions", json=user("hi"))
                assert status == 200
                chats += 1
            for _ in range(4):
                status, text = await fresh("GET", f"{url}/metrics")
                assert status == 200
                samples = parse(text)
                assert total(samples, "moe_requests_total", route="/v1/chat/completions") == chats
                assert (
                    total(
                        samples,
                        "moe_expert_call_duration_seconds_count",
                        expert="remote",
                        outcome="ok",
                    )
                    == chats
                )
                assert total(samples, "moe_models_loaded") == 1
            supervisor.send_signal(signal.SIGTERM)
            assert supervisor.wait(timeout=20) == 0
    finally:
        await upstream.close()
