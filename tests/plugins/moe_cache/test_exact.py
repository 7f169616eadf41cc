"""The exact cache over HTTP: a repeated request is answered without calling the expert, and
says so; anything that could change the answer, or a caller's refusal, goes to the expert."""

from __future__ import annotations

import json

import openai

from tests.plugins.moe_cache.conftest import (
    answer,
    ask,
    cached,
    calls,
    chat,
    notes,
    sse_chunks,
    streamed_text,
)


async def test_a_repeated_request_is_answered_from_the_cache_and_says_so(gateway):
    client = await gateway(cached())
    first = await chat(client, ask())
    again = await chat(client, ask())
    assert answer(again) == answer(first) == "what is the capital of france"
    assert calls(client) == 1
    assert notes(first) == []
    assert "'a' answered from the cache (exact)" in notes(again)
    # A hit spends nothing: no tokens reported for it.
    assert first["usage"]["total_tokens"] > 0 and again["usage"]["total_tokens"] == 0


async def test_the_official_sdk_sees_the_hit_in_moe_metadata_streamed_or_not(gateway):
    client = await gateway(cached())
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "name three primes"}]
    first = await sdk.chat.completions.create(model="auto", messages=messages, temperature=0)
    second = await sdk.chat.completions.create(model="auto", messages=messages, temperature=0)
    assert second.choices[0].message.content == first.choices[0].message.content
    assert any("from the cache (exact)" in note for note in second.moe_metadata["notes"])
    stream = await sdk.chat.completions.create(
        model="auto", messages=messages, temperature=0, stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "name three primes"
    assert calls(client) == 1


async def test_a_streamed_answer_is_cached_and_a_streamed_hit_replays_it(gateway):
    client = await gateway(cached())
    streamed = await client.post("/v1/chat/completions", json=ask("one two three", stream=True))
    words = sse_chunks(await streamed.text())
    assert len(words) > 3  # a word per chunk, then the end: really streamed by the expert
    replay = await client.post("/v1/chat/completions", json=ask("one two three", stream=True))
    chunks = sse_chunks(await replay.text())
    assert streamed_text(chunks) == "one two three"
    metadata = next(c["moe_metadata"] for c in chunks if "moe_metadata" in c)
    assert "'a' answered from the cache (exact)" in metadata["notes"]
    assert answer(await chat(client, ask("one two three"))) == "one two three"
    assert calls(client) == 1


async def test_anything_that_changes_the_answer_misses(gateway):
    client = await gateway(cached())
    await chat(client, ask("hello"))
    variants = [
        ask("hello!"),
        ask("hello", max_tokens=1),
        ask("hello", stop=["x"]),
        ask("hello", seed=7),
        ask("hello", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ask("hello", response_format={"type": "json_object"}),
        {"messages": [{"role": "system", "content": "be brief"}, *ask("hello")["messages"]]},
    ]
    for body in variants:
        assert notes(await chat(client, {"temperature": 0, **body})) == []
    assert calls(client) == 1 + len(variants)


async def test_what_does_not_change_the_answer_still_hits(gateway):
    client = await gateway(cached())
    await chat(client, ask("hello"))
    same = [
        ask("hello", user="someone else"),
        ask("hello", model="a"),
        ask("hello", metadata={"trace": "1"}),
        ask("hello", moe={"task_type": "chat"}),
    ]
    for body in same:
        assert any("from the cache" in note for note in notes(await chat(client, body)))
    assert calls(client) == 1


async def test_only_the_experts_listed_are_cached(gateway):
    client = await gateway(cached())
    for _ in range(2):
        assert answer(await chat(client, ask("x", model="b"))) == "b: x"
    assert calls(client, "b") == 2
    every = await gateway(cached(experts="*"))
    for _ in range(2):
        await chat(every, ask("x", model="b"))
    assert calls(every, "b") == 1


async def test_a_sampled_request_is_not_cached_unless_asked(gateway):
    client = await gateway(cached())
    sampled = {"messages": [{"role": "user", "content": "a poem"}]}  # temperature unset
    for body in (sampled, {**sampled, "temperature": 0.7}):
        await chat(client, body)
        assert notes(await chat(client, body)) == []
    assert calls(client) == 4
    # A seed makes it reproducible; moe.cache: true opts in whatever the temperature.
    seeded = {**sampled, "temperature": 0.7, "seed": 1}
    await chat(client, seeded)
    assert "from the cache" in " ".join(notes(await chat(client, seeded)))
    asked = {**sampled, "moe": {"cache": True}}
    await chat(client, asked)
    assert "from the cache" in " ".join(notes(await chat(client, asked)))
    assert calls(client) == 6
    # The tracker may cache sampled requests for everyone.
    always = await gateway(cached(sampled=True))
    await chat(always, sampled)
    assert "from the cache" in " ".join(notes(await chat(always, sampled)))


async def test_cache_control_no_store_bypasses_and_no_cache_refreshes(gateway):
    client = await gateway(cached())
    await chat(client, ask("secret"), **{"Cache-Control": "no-store"})
    await chat(client, ask("secret"))  # nothing was stored: a miss, stored now
    assert calls(client) == 2
    bypass = await chat(client, ask("secret"), **{"Cache-Control": "No-Store, max-age=10"})
    assert notes(bypass) == [] and calls(client) == 3
    # no-cache: fresh from the expert, and that fresh answer replaces the cached one.
    assert notes(await chat(client, ask("secret"), **{"Cache-Control": "no-cache"})) == []
    assert calls(client) == 4
    assert "from the cache" in " ".join(notes(await chat(client, ask("secret"))))
    assert calls(client) == 4


async def test_moe_cache_false_keeps_a_request_out_of_the_cache(gateway):
    client = await gateway(cached())
    await chat(client, ask("private", moe={"cache": False}))
    await chat(client, ask("private", moe={"cache": False}))
    assert calls(client) == 2
    await chat(client, ask("private"))
    assert calls(client) == 3


async def test_errors_are_never_cached(gateway):
    client = await gateway(cached({"a": {"kind": "echo", "fail": "error"}, "b": {"kind": "echo"}}))
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=ask("boom"))
        assert response.status == 502
        assert "error" in await response.json()
    assert calls(client) == 2


async def test_hits_and_misses_are_counted_in_stats(gateway):
    client = await gateway(cached())
    await chat(client, ask("one"))
    await chat(client, ask("one"))
    await chat(client, ask("two", moe={"cache": False}))
    stats = await (await client.get("/-/stats")).json()
    counts = json.dumps(stats)
    assert '"hit_exact": 1' in counts and '"miss": 1' in counts and '"bypass": 1' in counts


async def test_a_tool_call_is_cached_when_complete_and_never_when_streamed(gateway, fake_upstream):
    upstream, base_url = fake_upstream
    upstream.behaviour.tool_arguments = '{"city": "Paris"}'
    client = await gateway(cached({"a": {"kind": "openai", "base_url": base_url, "model": "m"}}))
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    body = ask("weather in paris?", tools=[tool])
    first = await chat(client, body)
    again = await chat(client, body)
    call = again["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert again["choices"][0]["finish_reason"] == "tool_calls"
    assert "'a' answered from the cache (exact)" in notes(again) and notes(first) == []
    assert len(upstream.requests) == 1
    # A streamed tool call is not re-assembled into the cache: each stream asks the upstream.
    streamed = ask("weather in rome?", tools=[tool], stream=True)
    for _ in range(2):
        chunks = sse_chunks(await (await client.post("/v1/chat/completions", json=streamed)).text())
        assert any(c["choices"] and c["choices"][0]["delta"].get("tool_calls") for c in chunks)
    assert len(upstream.requests) == 3
