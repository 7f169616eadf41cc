"""The chat page in a real browser against a gateway configured like the embedded default."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from tests.plugins.moe_webui.conftest import SCREENSHOTS, Served, Visit

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect

HEALTH_QUESTION = "I have had a fever and a dry cough for three days. Should I see a doctor?"
ANSWER_TIMEOUT_MS = 15_000
ONE_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)


def open_chat(visit: Visit, gateway: Served, model: str) -> Any:
    page = visit.page
    page.goto(gateway.url + "/")
    expect(page.locator(f'#model option[value="{model}"]')).to_have_count(1)
    page.select_option("#model", model)
    return page


def ask(page: Any, text: str) -> Any:
    """Send ``text`` and wait for the whole answer; returns the answer's element."""
    before = page.locator(".message.assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answer = page.locator(".message.assistant").nth(before)
    expect(answer).to_have_attribute("aria-busy", "false", timeout=ANSWER_TIMEOUT_MS)
    return answer


def stored_answers(page: Any) -> list[dict[str, Any]]:
    """The answers the page kept in localStorage, oldest first."""
    conversations = json.loads(page.evaluate("localStorage.getItem('moe.conversations')"))
    messages = [m for c in conversations for m in c["messages"] if m["role"] == "assistant"]
    return sorted(messages, key=lambda m: m["at"])


def test_the_model_list_is_the_gateways_and_an_answer_streams_as_markdown(visit, default_gateway):
    page = open_chat(visit, default_gateway, "finance")
    listed = page.eval_on_selector_all("#model option", "options => options.map(o => o.value)")
    models = [m["id"] for m in default_gateway.get("/v1/models").json()["data"]]
    assert listed == models and "auto" in listed and "healthcare" in listed
    # Record how much of the answer is on screen each time the page changes.
    page.evaluate(
        """() => { window.seen = []; new MutationObserver(() => {
            const body = document.querySelector('.message.assistant .body');
            if (body) window.seen.push(body.textContent.length);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true,
                                                           characterData: true}); }"""
    )
    question = (
        "Explain **compound interest** with one example, step by step, for a saver "
        "who puts money aside every month:\n\n```python\nprint(100 * 1.05 ** 10)\n```"
    )
    answer = ask(page, question)
    seen = page.evaluate("window.seen")
    growing = sorted(set(seen))
    assert len(growing) >= 3, f"the answer arrived in one piece, not streamed: {seen}"
    expect(answer.locator(".body strong")).to_have_text("compound interest")
    expect(answer.locator(".body pre code")).to_have_text("print(100 * 1.05 ** 10)\n")
    expect(answer.locator(".routing .expert")).to_have_text("finance")
    meta = stored_answers(page)[-1]["meta"]
    expect(answer.locator(".routing .confidence")).to_have_text(
        f"confidence {meta['confidence'] * 100:.1f}%"
    )
    expect(answer.locator(".routing .latency")).to_have_text(re.compile(r"^\d+ ms$|^\d+\.\d s$"))
    expect(answer.locator(".routing .cost")).to_have_text(re.compile(r"^\$"))
    answer.locator(".why summary").click()
    expect(answer.locator(".why")).to_contain_text(meta["request_id"])


def test_auto_names_the_expert_the_gate_chose_and_its_confidence(visit, default_gateway):
    page = open_chat(visit, default_gateway, "auto")
    answer = ask(page, HEALTH_QUESTION)
    body = {"model": "auto", "messages": [{"role": "user", "content": HEALTH_QUESTION}]}
    decision = default_gateway.post("/v1/route", json=body).json()
    assert decision["experts"] == ["healthcare"]
    expect(answer.locator(".routing .expert")).to_have_text("healthcare")
    expect(answer.locator(".routing .confidence")).to_have_text(
        f"confidence {decision['confidence'] * 100:.1f}%"
    )
    answer.locator(".why summary").click()
    expect(answer.locator(".why dd").first).to_have_text(decision["rationale"])


def test_generated_pictures_and_speech_are_shown_and_playable(visit, default_gateway):
    page = open_chat(visit, default_gateway, "flux")
    if not page.locator('#model option[value="flux"]').count():
        pytest.skip("moe-pollinations is not installed")
    answer = ask(page, "a red bicycle leaning on a blue wall")
    picture = answer.locator("figure.generated-image img")
    expect(picture).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    # Decoded by the browser, at the size the expert was asked for.
    size = picture.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
    assert size == [320, 180]
    page.select_option("#model", "openai-audio")
    page.locator("#settings summary").click()
    page.check("#speak")
    spoken = ask(page, "Say good morning")
    audio = spoken.locator("figure.generated-audio audio")
    expect(audio).to_have_attribute("src", re.compile(r"^data:audio/mpeg;base64,"))
    assert audio.evaluate("a => a.controls") is True


def test_an_attached_image_reaches_an_expert_that_sees_images(visit, default_gateway, tmp_path):
    page = open_chat(visit, default_gateway, "general")
    if not page.locator('#model option[value="openai"]').count():
        pytest.skip("moe-pollinations is not installed")
    picture = tmp_path / "dot.png"
    picture.write_bytes(base64.b64decode(ONE_PIXEL_PNG))
    page.set_input_files("#attach", str(picture))
    expect(page.locator("#attachments img")).to_have_attribute(
        "src", re.compile(r"^data:image/png;base64,")
    )
    # An expert that cannot see images says so, instead of answering without the picture.
    refused = ask(page, "What is in this picture?")
    expect(refused.locator(".error-card")).to_contain_text(re.compile(r"'general'.*vision"))
    expect(page.locator(".message.user img")).to_have_count(1)
    refused.get_by_role("button", name="Retry").wait_for()
    page.select_option("#model", "openai")
    refused.get_by_role("button", name="Retry").click()
    answer = page.locator(".message.assistant").last
    expect(answer.locator(".body")).to_have_text(
        "openai says: What is in this picture? (saw 1 image)"
    )
    expect(page.locator(".message.assistant")).to_have_count(1)


def test_feedback_reaches_the_tracker(visit, default_gateway):
    page = open_chat(visit, default_gateway, "general")
    answer = ask(page, "Tell me something nice")
    answer.get_by_role("button", name="Good answer").click()
    expect(answer.locator(".feedback-status")).to_have_text("Thanks: feedback recorded.")
    expect(answer.get_by_role("button", name="Good answer")).to_have_attribute(
        "aria-pressed", "true"
    )
    request_id = stored_answers(page)[-1]["meta"]["request_id"]
    stored = default_gateway.get(f"/v1/feedback/{request_id}")
    assert stored.status_code == 200, stored.text
    assert stored.json()["rating"] == 5 and stored.json()["expert"] == "general"


def test_fallbacks_failures_and_rate_limits_are_said_plainly(visit, default_gateway):
    page = open_chat(visit, default_gateway, "flaky")
    rescued = ask(page, "Are you there?")
    expect(rescued.locator(".fallback-note")).to_contain_text("flaky failed")
    expect(rescued.locator(".fallback-note")).to_contain_text("answered by general")
    expect(rescued.locator(".routing .expert")).to_have_text("general")

    page.select_option("#model", "broken")
    failed = ask(page, "Are you there?")
    card = failed.locator(".error-card")
    expect(card).to_contain_text("expert 'broken' failed as configured")
    expect(card.get_by_role("button", name="Retry")).to_be_visible()

    page.select_option("#model", "limited")
    ask(page, "one")
    limited = ask(page, "two")
    expect(limited.locator(".error-card strong")).to_have_text(
        re.compile(r"^Rate limited: try again in \d+ s$")
    )


def test_stop_keeps_what_arrived_and_frees_the_composer(visit, default_gateway):
    page = open_chat(visit, default_gateway, "general")
    page.fill("#prompt", " ".join(f"word{i}" for i in range(400)))
    page.press("#prompt", "Enter")
    answer = page.locator(".message.assistant").last
    expect(answer.locator(".body")).to_contain_text("word3")
    page.click("#stop")
    expect(answer).to_have_attribute("aria-busy", "false")
    expect(answer.locator(".stopped")).to_have_text("Stopped.")
    expect(page.locator("#send")).to_be_visible()
    kept = stored_answers(page)[-1]
    assert kept["stopped"] is True and 0 < len(kept["content"].split()) < 400


def test_conversations_are_kept_in_the_browser(visit, default_gateway):
    page = open_chat(visit, default_gateway, "auto")
    ask(page, HEALTH_QUESTION).locator(".why summary").click()
    page.select_option("#model", "finance")
    ask(page, "How much is **5%** of 2,000?\n\n```python\nprint(0.05 * 2000)\n```")
    page.select_option("#model", "flaky")
    ask(page, "Are you there?")
    if page.locator('#model option[value="flux"]').count():
        page.select_option("#model", "flux")
        ask(page, "a lighthouse at dusk")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 1300})
    page.screenshot(path=SCREENSHOTS / "ui-chat.png")

    page.reload()
    item = page.locator("#conversation-list li").first
    expect(item).to_contain_text(HEALTH_QUESTION[:20])
    page.click("#new-chat")
    expect(page.locator(".message")).to_have_count(0)
    item.get_by_role("button").first.click()
    expect(page.locator(".message.user").first).to_have_text(HEALTH_QUESTION)
    expect(page.locator(".message.assistant .routing .expert").first).to_have_text("healthcare")
    # The key never lands in localStorage, where conversations are.
    assert "apiKey" not in page.evaluate("JSON.stringify(localStorage)")


def test_the_first_load_is_small_and_nothing_leaves_the_gateway(visit, default_gateway):
    page = open_chat(visit, default_gateway, "linker")
    page.wait_for_load_state("networkidle")
    loaded = list(visit.requests)
    transferred = 0
    for request in loaded:
        sizes = request.sizes()
        transferred += sizes["responseBodySize"] + sizes["responseHeadersSize"]
    assert transferred < 300_000, transferred
    # An answer naming pictures elsewhere loads none of them: it links to them instead.
    answer = ask(page, "show me")
    expect(answer.locator(".body a.image-elsewhere")).to_have_count(2)
    expect(answer.locator(".body a.image-elsewhere").first).to_have_text("[image: tracker]")
    page.wait_for_load_state("networkidle")
    outside = [r.url for r in visit.requests if not r.url.startswith(default_gateway.url + "/")]
    assert not outside, outside
