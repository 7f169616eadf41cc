"""The call-cache protocol: a tracker that remembers answers serves a repeated call without
calling the expert, streamed or not, and the hit is visible to trackers and spends nothing."""

from __future__ import annotations

from typing import Any

from moe_core.events import ExpertCalled
from moe_core.models import ChatRequest, ExpertResult
from moe_core.parts import Tracker
from moe_core.plugins import Register, hookimpl
from moe_core.run import Run
from tests.conftest import user


class RememberEverything(Tracker):
    """The simplest cache: by expert and last user message, forever (a test double)."""

    observes = (ExpertCalled,)

    def __init__(self, name: str, options: Any) -> None:
        super().__init__(name, options)
        self.answers: dict[tuple[str, str], ExpertResult] = {}
        self.calls: list[ExpertCalled] = []

    async def observe(self, event: ExpertCalled) -> None:  # type: ignore[override]
        self.calls.append(event)

    async def lookup(self, run: Run, expert: str, request: ChatRequest) -> ExpertResult | None:
        return self.answers.get((expert, request.last_user_text()))

    async def remember(
        self, run: Run, expert: str, request: ChatRequest, result: ExpertResult
    ) -> None:
        self.answers[(expert, request.last_user_text())] = result


class CachePlugin:
    @hookimpl
    def moe_register_trackers(self, register: Register) -> None:
        register("remember", RememberEverything)


CONFIG = {"experts": {"a": {"kind": "echo"}}, "trackers": {"cache": {"kind": "remember"}}}


async def test_a_repeated_call_is_answered_from_the_cache_streamed_or_not(gateway):
    client = await gateway(CONFIG, plugins=[("remember-cache", CachePlugin())])
    first = await (await client.post("/v1/chat/completions", json=user("one two"))).json()
    again = await (await client.post("/v1/chat/completions", json=user("one two"))).json()
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    streamed = await client.post("/v1/chat/completions", json=user("one two", stream=True))
    text = await streamed.text()
    assert '"content":"one two"' in text and text.rstrip().endswith("data: [DONE]")
    # A streamed miss is re-assembled and remembered for the next complete call.
    await (await client.post("/v1/chat/completions", json=user("three", stream=True))).text()
    hit = await (await client.post("/v1/chat/completions", json=user("three"))).json()
    assert hit["choices"][0]["message"]["content"] == "three"


async def test_hits_are_reported_as_cached_calls_that_cost_nothing():
    from moe_core.testing import make_moe

    moe = make_moe(CONFIG, plugins=[("remember-cache", CachePlugin())])
    async with moe:
        await moe.complete(user("hello"))
        await moe.complete(user("hello"))
    cache = moe.trackers["cache"]
    assert [call.cached for call in cache.calls] == [False, True]
    assert cache.calls[1].usage is None and cache.calls[1].cost_usd is None
    assert moe.experts["a"].expert.calls == 1  # the expert answered once
