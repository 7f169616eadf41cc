"""A real browser (Debian's chromium, driven by Playwright) against real gateways on loopback.

Each gateway runs in a thread with its own event loop, on 127.0.0.1 and a free port, so the
browser talks to it over TCP exactly as it would to ``moe serve``; tests read what the gateway
recorded through its public routes. Chromium is installed with apt when it is missing (the
Playwright browser download is not used); if that fails, the browser tests are skipped saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from moe_core.plugins import create_plugin_manager
from moe_core.server import create_app
from moe_core.testing import make_moe

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECT_TIMEOUT_MS = 10_000
SCREENSHOTS = Path(__file__).resolve().parents[3] / "bench" / "results"
TRACKERS = {
    "performance": {"kind": "performance"},
    "breaker": {"kind": "circuit-breaker"},
    "feedback": {"kind": "feedback"},
    "ab-tests": {"kind": "ab-tests"},
    "rate-limit": {"kind": "rate-limit", "per_expert": {"limited": {"requests_per_minute": 1}}},
}

Build = Callable[[contextlib.AsyncExitStack], Awaitable[dict[str, Any]]]


@dataclass
class Served:
    """A gateway serving in a background thread; ``url`` ends without a slash."""

    url: str

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)


@contextlib.contextmanager
def serve(
    build: Build, *, plugins: Iterable[tuple[str, object]] = (), wait: bool = True
) -> Iterator[Served]:
    """Serve the gateway ``build`` configures (it may start fakes on the exit stack first).

    :param wait: answer only once every part has loaded; ``False`` answers at once, as
        ``moe serve`` does, while the gate and experts load.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def start() -> str:
        config = await build(stack)
        moe = make_moe(config, plugins=plugins)
        runner = web.AppRunner(create_app(moe, wait_for_experts=wait))
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def run(coroutine: Awaitable[Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    try:
        yield Served(run(start(), timeout=120))
    finally:
        with contextlib.suppress(Exception):
            run(stack.aclose(), timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def default_mirror() -> dict[str, Any]:
    """The embedded default configuration with echo experts in place of its language models:
    the same expert names, fallbacks, cards and gate, so routing is the default's own."""
    default = create_plugin_manager().default_config()
    experts = {
        name: {
            **{key: expert[key] for key in ("fallbacks", "card") if key in expert},
            "kind": "echo",
            "delay_s": 0.02,  # between streamed words: the answer visibly streams
        }
        for name, expert in default["experts"].items()
    }
    return {"experts": experts, "gate": default["gate"], "combiner": default.get("combiner", {})}


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing."""
    if not os.path.exists(CHROMIUM) and shutil.which("apt-get"):
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                check=True,
                capture_output=True,
                timeout=600,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"chromium is not installed and `apt-get install chromium` failed: {exc}")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no browser at {CHROMIUM} and no apt-get to install chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """One browser per test module: Playwright's synchronous API holds an event loop while it
    runs, which the asynchronous tests of other modules need to be free."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    # A shared machine under load may take seconds to paint what a fast one shows at once.
    sync_api.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Visit:
    """A fresh browser context (empty storage) and its page, with every request it made."""

    page: Any
    requests: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def visit(browser: Any) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    visit = Visit(page)
    page.on("request", lambda request: visit.requests.append(request))
    page.on("pageerror", lambda error: visit.errors.append(str(error)))
    yield visit
    context.close()
    # A script error is a broken page even when the test's own checks passed.
    assert not visit.errors, visit.errors


@pytest.fixture(scope="session")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The default configuration's experts and gate (echo experts), every tracker, plus a
    Pollinations image model and speech model on a local fake, and experts that fail."""
    cache = tmp_path_factory.mktemp("pollinations")

    async def build(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
        config = default_mirror()
        config["trackers"] = TRACKERS
        config["tracking"] = {"store": "memory"}
        config["server"] = {"access_log": False}
        config["experts"].update(
            {
                "flaky": {"kind": "echo", "fail": "error", "fallbacks": ["general"]},
                "broken": {"kind": "echo", "fail": "error"},
                "limited": {"kind": "echo"},
                "linker": {"kind": "echo", "reply": OUTSIDE_IMAGE_REPLY},
            }
        )
        fake = await pollinations_fake(stack)
        if fake is not None:
            options = {
                **fake.options(),
                "token_env": None,
                "referrer_env": None,
                "backoff_s": 0.01,
                "cache_dir": str(cache),
                "refresh_listing": False,
            }
            config["experts"]["flux"] = {"kind": "pollinations", "width": 320, "height": 180}
            config["experts"]["openai-audio"] = {"kind": "pollinations"}
            config["experts"]["openai"] = {"kind": "pollinations"}  # sees images
            for name in ("flux", "openai-audio", "openai"):
                config["experts"][name].update(options)
        return config

    with serve(build) as served:
        yield served


OUTSIDE_IMAGE_REPLY = (
    "Here: ![tracker](http://192.0.2.1/pixel.png) and <img src=http://192.0.2.1/x.png>"
)


async def pollinations_fake(stack: contextlib.AsyncExitStack) -> Any:
    """The local Pollinations fake, when moe-pollinations is installed beside this plugin."""
    try:
        from moe_pollinations.testing import FakePollinations
    except ImportError:
        return None
    fake = await FakePollinations().start()
    stack.push_async_callback(fake.close)
    return fake
