"""Helpers for testing gateways and plugins without models or network.

``EchoExpert`` answers with the last user message and can be told to fail in each way a real
expert fails (error, hang, death mid-stream), so routing, fallbacks and streaming can be tested
deterministically. It is registered only by :data:`testing_plugin`, never by default::

    moe = make_moe({"experts": {"a": {"kind": "echo"}}})
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal

from pydantic import Field

from moe_core.config import MoEConfig
from moe_core.errors import UpstreamError
from moe_core.models import ChatRequest, Delta, ExpertCard, ExpertResult, Usage
from moe_core.orchestrator import MoE
from moe_core.parts import Expert
from moe_core.plugins import Options, Register, create_plugin_manager, hookimpl


class EchoOptions(Options):
    prefix: str = Field("", description="Put before the echoed text.")
    reply: str | None = Field(None, description="Answer this instead of echoing (a fake judge).")
    delay_s: float = Field(0.0, ge=0, description="Wait before answering (and between chunks).")
    fail: Literal["error", "hang"] | None = Field(None, description="Fail every call this way.")
    fail_after_chunks: int | None = Field(
        None, ge=0, description="When streaming, raise after this many chunks."
    )
    card: dict[str, Any] = Field(default_factory=dict, description="The card it reports.")
    load_delay_s: float = Field(0.0, ge=0, description="How long start() takes.")
    load_error: str | None = Field(None, description="Make start() fail with this message.")


class EchoExpert(Expert):
    """Answers with the last user message, word by word when streaming (tests and demos)."""

    options: EchoOptions

    def __init__(self, name: str, options: EchoOptions) -> None:
        super().__init__(name, options)
        self.calls = 0

    def card(self) -> ExpertCard:
        return ExpertCard.model_validate({"provider": "echo", **self.options.card})

    async def start(self) -> None:
        await asyncio.sleep(self.options.load_delay_s)
        if self.options.load_error:
            raise RuntimeError(self.options.load_error)

    def _answer(self, request: ChatRequest) -> str:
        if self.options.reply is not None:
            return self.options.reply
        return self.options.prefix + request.last_user_text()

    async def _maybe_fail(self) -> None:
        self.calls += 1
        if self.options.delay_s:
            await asyncio.sleep(self.options.delay_s)
        if self.options.fail == "error":
            raise UpstreamError(f"expert {self.name!r} failed as configured")
        if self.options.fail == "hang":
            await asyncio.Event().wait()

    async def generate(self, request: ChatRequest) -> ExpertResult:
        await self._maybe_fail()
        text = self._answer(request)
        limit = request.output_limit
        words = text.split(" ")
        finish = "stop"
        if limit is not None and len(words) > limit:
            text, finish = " ".join(words[:limit]), "length"
        return ExpertResult(
            content=text,
            finish_reason=finish,
            usage=Usage.of(_count_words(request), len(text.split())),
            model=self.name,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        await self._maybe_fail()
        words = self._answer(request).split(" ")
        for index, word in enumerate(words):
            if (
                self.options.fail_after_chunks is not None
                and index >= self.options.fail_after_chunks
            ):
                raise UpstreamError(f"expert {self.name!r} died mid-stream as configured")
            if index and self.options.delay_s:
                await asyncio.sleep(self.options.delay_s)
            yield Delta(content=word if index == 0 else " " + word)
        yield Delta(finish_reason="stop", usage=Usage.of(_count_words(request), len(words)))


def _count_words(request: ChatRequest) -> int:
    return sum(len(message.text().split()) for message in request.messages)


class _TestingPlugin:
    @hookimpl
    def moe_register_experts(self, register: Register) -> None:
        register("echo", EchoExpert, options=EchoOptions)


testing_plugin = _TestingPlugin()


def make_moe(
    config: Mapping[str, Any] | MoEConfig,
    *,
    plugins: Iterable[tuple[str, object]] = (),
    entrypoints: bool = True,
) -> MoE:
    """A gateway from a config dict, with the ``echo`` expert kind available."""
    manager = create_plugin_manager(
        entrypoints=entrypoints, plugins=[("testing", testing_plugin), *plugins]
    )
    return MoE.from_config(config, plugin_manager=manager)
