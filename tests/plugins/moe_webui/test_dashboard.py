"""The dashboard, and a key-protected gateway, in a real browser."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.plugins.moe_webui.conftest import SCREENSHOTS, TRACKERS, Served, Visit, serve
from tests.plugins.moe_webui.test_chat import ask, open_chat

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect

CLIENT_KEY = "client-key-for-the-page"
ADMIN_KEY = "admin-key-for-the-page"


def calls_of(gateway: Served, expert: str) -> int:
    """How many calls the gateway's performance tracker counted for ``expert``."""
    report = gateway.get("/-/stats").json()["performance"]["experts"].get(expert)
    return report["overall"]["calls"] if report else 0


def expert_row(page: Any, expert: str) -> Any:
    return page.get_by_test_id("experts-table").locator(
        "tr", has=page.get_by_text(expert, exact=True)
    )


def test_the_dashboard_shows_the_calls_just_made(visit: Visit, default_gateway: Served):
    before = calls_of(default_gateway, "cybersecurity")
    page = open_chat(visit, default_gateway, "auto")
    for question in (
        "Someone keeps trying to log into my email account from another country",
        "Is this link in an email asking for my bank password a phishing attempt?",
    ):
        expect(ask(page, question).locator(".routing .expert")).to_have_text("cybersecurity")
    page.select_option("#model", "broken")
    ask(page, "Are you there?")
    page.click("#tab-dashboard")
    row = expert_row(page, "cybersecurity")
    expect(row.locator("td").nth(2)).to_have_text(str(before + 2))
    assert calls_of(default_gateway, "cybersecurity") == before + 2
    expect(row.locator("td").nth(1)).to_have_text("ready")
    expect(expert_row(page, "broken").locator("td").nth(3)).to_have_text("100.0%")
    routing = page.locator("#dash-routing")
    expect(
        routing.get_by_role("img", name=re.compile(r"^cybersecurity: \d+ \(\d+%\)$"))
    ).to_be_visible()
    expect(page.locator("#dash-recent")).to_contain_text("cybersecurity")
    plugins = page.locator("#dash-plugins")
    expect(plugins.locator("tr", has=page.get_by_text("moe-webui"))).to_contain_text(
        "frontend: webui"
    )
    expect(page.locator("#dash-summary")).to_contain_text("Gateway")
    # An A/B test (on a task type no request here has, so routing is unchanged) and its analysis.
    spec = {"expert_a": "general", "expert_b": "finance", "task_type": "translation"}
    started = default_gateway.post("/v1/ab-tests", json=spec)
    assert started.status_code == 201, started.text
    # Each refresh is a sample of the figures over time.
    finance = calls_of(default_gateway, "finance")
    for round in range(1, 4):
        for model in ("finance", "general"):
            body = {"model": model, "messages": [{"role": "user", "content": "hello " * round}]}
            assert default_gateway.post("/v1/chat/completions", json=body).status_code == 200
        page.click("#dash-refresh")
        expect(expert_row(page, "finance").locator("td").nth(2)).to_have_text(str(finance + round))
    test = page.locator("#dash-ab-tests tbody tr")
    expect(test).to_contain_text(started.json()["id"])
    expect(test).to_contain_text("Keep the test running: not enough samples yet")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "ui-dashboard.png", full_page=True)
    default_gateway.post(f"/v1/ab-tests/{started.json()['id']}/stop")

    # An open breaker is reset from the dashboard.
    breaker = page.get_by_test_id("breakers-table").locator(
        "tr", has=page.get_by_text("broken", exact=True)
    )
    expect(breaker.locator("td").nth(2)).not_to_have_text("0")
    breaker.get_by_role("button", name="Reset broken").click()
    expect(breaker.locator("td").nth(2)).to_have_text("0")
    state = default_gateway.get("/v1/circuit-breakers").json()["data"]["broken"]
    assert state["state"] == "closed" and state["consecutive_failures"] == 0


def test_the_dashboard_refreshes_itself(visit: Visit, default_gateway: Served):
    page = visit.page
    page.clock.install()
    page.goto(default_gateway.url + "/#dashboard")
    row = expert_row(page, "finance")
    expect(row).to_be_visible()
    shown = int(row.locator("td").nth(2).inner_text())
    body = {"model": "finance", "messages": [{"role": "user", "content": "hello"}]}
    assert default_gateway.post("/v1/chat/completions", json=body).status_code == 200
    page.clock.run_for(6000)
    expect(row.locator("td").nth(2)).to_have_text(str(shown + 1))


@pytest.fixture
def keyed_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("WEBUI_TEST_KEYS", CLIENT_KEY)
    monkeypatch.setenv("WEBUI_TEST_ADMIN_KEYS", ADMIN_KEY)

    async def build(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
        return {
            "experts": {"general": {"kind": "echo"}, "broken": {"kind": "echo", "fail": "error"}},
            "trackers": {"breaker": TRACKERS["breaker"]},
            "tracking": {"store": "memory"},
            "server": {
                "api_keys_env": "WEBUI_TEST_KEYS",
                "admin_keys_env": "WEBUI_TEST_ADMIN_KEYS",
                "access_log": False,
            },
        }

    with serve(build) as served:
        yield served


def test_a_key_protected_gateway_asks_for_a_key(visit: Visit, keyed_gateway: Served):
    page = visit.page
    page.goto(keyed_gateway.url + "/")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#key-title")).to_have_text("API key needed")
    page.fill("#key-input", "wrong-key")
    page.press("#key-input", "Enter")
    expect(dialog.locator("#key-error")).to_have_text("Incorrect API key provided.")
    page.fill("#key-input", CLIENT_KEY)
    page.press("#key-input", "Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator('#model option[value="general"]')).to_have_count(1)
    page.select_option("#model", "general")
    answer = ask(page, "hello with a key")
    expect(answer.locator(".body")).to_have_text("hello with a key")
    assert page.evaluate("sessionStorage.getItem('moe.apiKey')") == CLIENT_KEY
    assert CLIENT_KEY not in page.evaluate("JSON.stringify(localStorage)")

    # Resetting a breaker needs the admin key: the page asks for it when refused.
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "broken", "messages": [{"role": "user", "content": "hi"}]}
    assert keyed_gateway.post("/v1/chat/completions", json=body, headers=headers).status_code == 502
    page.click("#tab-dashboard")
    # A section whose tracker this gateway lacks says which to add, and the rest still shows.
    expect(page.locator("#dash-routing")).to_contain_text("no 'performance' tracker")
    page.get_by_role("button", name="Reset broken").click()
    expect(dialog.locator("#key-title")).to_have_text("Admin key needed")
    page.fill("#key-input", ADMIN_KEY)
    page.press("#key-input", "Enter")
    breaker = page.get_by_test_id("breakers-table").locator(
        "tr", has=page.get_by_text("broken", exact=True)
    )
    expect(breaker.locator("td").nth(2)).to_have_text("0")
    assert page.evaluate("sessionStorage.getItem('moe.adminKey')") == ADMIN_KEY
