"""A gateway that is still loading its gate: the page says so and asks again, never a blank page."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from moe_core import ChatRequest, ExpertCard, Gate, Register, RoutingDecision, hookimpl
from tests.plugins.moe_webui.conftest import Served, Visit, serve
from tests.plugins.moe_webui.test_chat import open_chat

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect


LOADED = threading.Event()


class SlowStartGate(Gate):
    """Loads until the test says it has loaded (:data:`LOADED`), then picks the first expert."""

    async def start(self) -> None:
        while not LOADED.is_set():
            await asyncio.sleep(0.02)

    async def route(
        self, request: ChatRequest, experts: Mapping[str, ExpertCard], signals: Mapping[str, Any]
    ) -> RoutingDecision:
        first = next(iter(experts))
        return RoutingDecision(experts=[first], gate=self.name, confidence=1.0, rationale="first")


class SlowStartPlugin:
    @hookimpl
    def moe_register_gates(self, register: Register) -> None:
        register("slow-start", SlowStartGate)


@pytest.fixture
def loading_gateway() -> Iterator[Served]:
    LOADED.clear()

    async def build(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
        return {
            "experts": {"general": {"kind": "echo"}},
            "gate": {"kind": "slow-start"},
            "server": {"access_log": False},
        }

    with serve(build, plugins=[("slow-start", SlowStartPlugin())], wait=False) as served:
        yield served
    LOADED.set()


def test_a_question_asked_while_the_gateway_loads_is_answered_once_it_is_ready(
    visit: Visit, loading_gateway: Served
):
    page = visit.page
    page.clock.install()
    open_chat(visit, loading_gateway, "auto")
    page.fill("#prompt", "are you ready?")
    page.press("#prompt", "Enter")
    answer = page.locator(".message.assistant").last
    expect(answer.get_by_role("status")).to_contain_text("still loading its models")
    expect(page.locator("#stop")).to_be_visible()
    # The gateway said when to come back (Retry-After): once it is ready, the page asks again.
    expect(page.locator("#gateway-status")).to_have_text("loading")
    LOADED.set()
    while loading_gateway.get("/health").json()["gate"] != "ready":
        time.sleep(0.02)
    page.clock.run_for(5_000)
    expect(answer).to_have_attribute("aria-busy", "false")
    expect(answer.locator(".body")).to_have_text("are you ready?")
    expect(answer.locator(".routing .expert")).to_have_text("general")
    expect(answer.get_by_role("status")).to_be_hidden()
