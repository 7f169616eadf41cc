"""Web search: a question about fresh information is searched once per request, against
SearXNG, Brave or Tavily, and the experts get the results as cited sources; a cheap expert may
decide and write the queries; failures leave a note, never a failed answer."""

from __future__ import annotations

import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from tests.plugins.moe_context.conftest import text_expert

NEWS = "What is the latest news about the lunar base?"


def provider(kind: str, base: str, monkeypatch) -> dict:
    if kind == "searxng":
        return {"kind": "searxng", "base_url": base}
    monkeypatch.setenv("TEST_SEARCH_KEY", "fake-search-key")
    root = f"{base}/res/v1" if kind == "brave" else base
    return {"kind": kind, "base_url": root, "api_key_env": "TEST_SEARCH_KEY"}


def searching(experts: dict, search: dict, **options) -> dict:
    return {
        "experts": experts,
        "preparers": {"search": {"kind": "web-search", "provider": search, **options}},
    }


async def ask(gateway, config, text: str, **extra) -> dict:
    client = await gateway(config)
    body = {"messages": [{"role": "user", "content": text}], **extra}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    return await response.json()


def system_text(request: dict) -> str:
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "system")


@pytest.mark.parametrize("kind", ["searxng", "brave", "tavily"])
async def test_a_latest_news_question_is_searched_and_cited(
    gateway, openai_fake, fake_search, monkeypatch, kind
):
    search, base = fake_search
    upstream, base_url = await openai_fake(reply="Per [S1], it opened.")
    config = searching({"chat": text_expert(base_url)}, provider(kind, base, monkeypatch))
    body = await ask(gateway, config, NEWS)

    assert [(r["provider"], r["query"]) for r in search.requests] == [(kind, NEWS)]
    context = system_text(upstream.requests[0])
    assert context.startswith(f"Web search results for this question ({kind}, searched just now")
    assert f"[S1] {NEWS} — report 1 (2026-01-01T08:00:00Z) — https://news.example/" in context
    assert "Report 3 on" in context
    notes = body["moe_metadata"]["notes"]
    assert f"search: searched {kind} for {NEWS!r} (the question says 'latest'): 3 result(s)" in (
        notes
    )
    slug = "what-is-the-latest-news-about-the-lunar-base"
    source = {"id": "S2", "title": f"{NEWS} — report 2", "url": f"https://news.example/{slug}/2"}
    assert {**source, "by": "search"} in body["moe_metadata"]["sources"]
    assert body["choices"][0]["message"]["content"] == "Per [S1], it opened."


async def test_the_providers_are_sent_their_keys_and_options(
    gateway, openai_fake, fake_search, monkeypatch
):
    search, base = fake_search
    _, base_url = await openai_fake()
    brave = {**provider("brave", base, monkeypatch), "freshness": "pw"}
    await ask(gateway, searching({"chat": text_expert(base_url)}, brave, max_results=2), NEWS)
    tavily = {**provider("tavily", base, monkeypatch), "topic": "news"}
    await ask(gateway, searching({"chat": text_expert(base_url)}, tavily), NEWS)
    brave_request, tavily_request = search.requests
    assert brave_request["headers"]["X-Subscription-Token"] == "fake-search-key"
    assert brave_request["params"] == {"q": NEWS, "count": "2", "freshness": "pw"}
    assert tavily_request["headers"]["Authorization"] == "Bearer fake-search-key"
    assert tavily_request["body"] == {
        "query": NEWS,
        "max_results": 5,
        "topic": "news",
        "search_depth": "basic",
    }


async def test_a_question_that_needs_nothing_fresh_is_not_searched(
    gateway, openai_fake, fake_search
):
    search, base = fake_search
    upstream, base_url = await openai_fake()
    config = searching({"chat": text_expert(base_url)}, {"kind": "searxng", "base_url": base})
    await ask(gateway, config, "Explain how a binary search works.")
    assert search.requests == []
    assert system_text(upstream.requests[0]) == ""


async def test_a_cheap_expert_decides_and_writes_the_queries_once_per_request(
    gateway, openai_fake, fake_search
):
    search, base = fake_search
    upstream, base_url = await openai_fake()
    decider, decider_url = await openai_fake(
        reply='Sure. {"search": true, "queries": ["lunar base opening", "moon base crew"]}'
    )
    config = searching(
        {
            "thinker": text_expert(base_url),
            "doer": text_expert(base_url),
            "cheap": text_expert(decider_url),
        },
        {"kind": "searxng", "base_url": base},
        decider="cheap",
        max_results=4,
    )
    config["combiner"] = {
        "kind": "chain",
        "preset": "reasoning-execution",
        "reasoner": "thinker",
        "executor": "doer",
    }
    body = await ask(gateway, config, "Who lives on the moon base?", stream=False)
    assert [r["query"] for r in search.requests] == ["lunar base opening", "moon base crew"]
    assert len(decider.requests) == 1
    assert "Who lives on the moon base?" in decider.requests[0]["messages"][0]["content"]
    for request in upstream.requests:  # both stages got the same four results
        context = system_text(request)
        assert context.count("\n[S") == 4 and "moon base crew — report 1" in context
    metadata = body["moe_metadata"]
    assert metadata["experts_used"] == ["cheap", "thinker", "doer"]
    assert any("(decided by 'cheap'): 4 result(s)" in n for n in metadata["notes"])


@pytest.mark.parametrize(
    ("reply", "searched", "note"),
    [
        ('{"search": false, "queries": []}', False, "search: 'cheap' judged that no search"),
        ("I cannot tell.", True, "search: 'cheap' answered no readable decision; keyword rules"),
    ],
)
async def test_the_deciders_no_or_an_unreadable_reply(
    gateway, openai_fake, fake_search, reply, searched, note
):
    search, base = fake_search
    _, base_url = await openai_fake()
    _, decider_url = await openai_fake(reply=reply)
    config = searching(
        {"chat": text_expert(base_url), "cheap": text_expert(decider_url)},
        {"kind": "searxng", "base_url": base},
        decider="cheap",
    )
    config["gate"] = {"kind": "fixed", "expert": "chat"}
    body = await ask(gateway, config, NEWS)
    assert bool(search.requests) is searched
    assert any(n.startswith(note) for n in body["moe_metadata"]["notes"])


async def test_a_failing_provider_leaves_a_note_and_the_expert_answers(
    gateway, openai_fake, fake_search, monkeypatch
):
    search, base = fake_search
    upstream, base_url = await openai_fake(reply="From what I know...")
    search.status = 503
    config = searching({"chat": text_expert(base_url)}, {"kind": "searxng", "base_url": base})
    body = await ask(gateway, config, NEWS)
    assert body["choices"][0]["message"]["content"] == "From what I know..."
    assert system_text(upstream.requests[0]) == ""
    assert any(
        n.startswith(f"search: searxng search for {NEWS!r} failed: searxng answered 503")
        for n in body["moe_metadata"]["notes"]
    )
    monkeypatch.setenv("TEST_SEARCH_KEY", "a-wrong-key")
    brave = {"kind": "brave", "base_url": f"{base}/res/v1", "api_key_env": "TEST_SEARCH_KEY"}
    body = await ask(gateway, searching({"chat": text_expert(base_url)}, brave), NEWS)
    assert any("brave answered 422" in n for n in body["moe_metadata"]["notes"])


def test_a_provider_key_that_is_not_set_stops_startup(monkeypatch):
    monkeypatch.delenv("UNSET_SEARCH_KEY", raising=False)
    config = searching(
        {"chat": {"kind": "echo"}},
        {"kind": "tavily", "api_key_env": "UNSET_SEARCH_KEY"},
    )
    with pytest.raises(ConfigError, match="preparers.search.provider.api_key_env: UNSET_SEARCH"):
        make_moe(config)
    config = searching(
        {"chat": {"kind": "echo"}}, {"kind": "searxng", "base_url": "http://x"}, decider="gone"
    )
    with pytest.raises(ConfigError, match="preparers.search.decider: unknown expert 'gone'"):
        make_moe(config)
