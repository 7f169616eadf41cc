"""The ``multimodal`` combiner: a text answer, pictures and speech in one response.

The decision's experts (and fallbacks) are sorted by what their cards say they produce: image
experts draw, speech experts (audio out) narrate, the rest write. The text answer and the picture
are independent, so they run at the same time; speech reads the text answer aloud, so it starts
when the text is done (or, with no text expert, answers the prompt itself). Each modality walks
its own fallbacks; one that still fails is left out and ``moe_metadata.notes`` says so, and only
when every modality failed does the request fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydantic import Field

from moe_core import (
    ChatRequest,
    Combiner,
    CombinerOptions,
    Delta,
    ExpertResult,
    MoEError,
    Run,
    UpstreamError,
)
from moe_core.models import AudioOutput, ChatMessage, ImageOutput

READ_ALOUD = "Read the user's text aloud exactly as written, without adding anything."


class MultimodalOptions(CombinerOptions):
    voice: str = Field("nova", description="Voice when the request names none (audio.voice)")
    max_speech_chars: int = Field(
        2000, ge=1, description="Longest text read aloud (the speech model's input limit)"
    )


class _Groups:
    def __init__(self, run: Run) -> None:
        self.text: list[str] = []
        self.image: list[str] = []
        self.speech: list[str] = []
        for name in dict.fromkeys([*run.decision.experts, *run.decision.fallbacks]):
            produces = run.card(name).modalities_out
            if "image" in produces:
                self.image.append(name)
            elif "audio" in produces:
                self.speech.append(name)
            else:
                self.text.append(name)


class MultimodalCombiner(Combiner):
    """Text, images and speech together; a failed modality degrades to the others."""

    options: MultimodalOptions

    async def complete(self, run: Run) -> ExpertResult:
        groups = _Groups(run)
        image_task = asyncio.create_task(self._image(run, groups.image))
        try:
            text = await self._first(run, "text", groups.text) if groups.text else None
        except BaseException:
            image_task.cancel()
            raise
        images = await image_task
        audio = await self._speech(run, groups.speech, text) if groups.speech else None
        return self._merge(run, groups, text, images, audio)

    async def stream(self, run: Run) -> AsyncIterator[Delta]:
        """Text streams as it is written; pictures and speech follow in one last delta."""
        groups = _Groups(run)
        image_task = asyncio.create_task(self._image(run, groups.image))
        try:
            text: ExpertResult | None = None
            if groups.text:
                parts: list[str] = []
                answered: list[str] = []
                async for delta in self._stream_text(run, groups.text, answered):
                    if delta.content:
                        parts.append(delta.content)
                    yield delta.model_copy(update={"finish_reason": None})
                if answered:
                    text = ExpertResult(content="".join(parts), model=answered[0])
            images = await image_task
        finally:
            image_task.cancel()
        audio = await self._speech(run, groups.speech, text) if groups.speech else None
        merged = self._merge(run, groups, text, images, audio)
        yield Delta(
            content=None if groups.text and text is not None else merged.content,
            images=merged.images or None,
            audio=merged.audio or None,
            finish_reason="stop",
        )

    # -- each modality -------------------------------------------------------------------------

    async def _first(
        self, run: Run, what: str, names: list[str], request: ChatRequest | None = None
    ) -> ExpertResult | None:
        """The first of ``names`` that answers; failures recorded; ``None`` if all fail."""
        for name in names:
            try:
                return await run.call(name, request)
            except MoEError as exc:
                run.record_fallback(name, exc)
        if names:
            run.note(f"{what}: every expert failed ({', '.join(names)}); answered without it")
        return None

    async def _stream_text(
        self, run: Run, names: list[str], answered: list[str]
    ) -> AsyncIterator[Delta]:
        """The first expert of ``names`` that starts streaming; its name goes in ``answered``."""
        for position, name in enumerate(names):
            deltas = run.stream(name)
            try:
                first = await anext(deltas)
            except StopAsyncIteration:
                answered.append(name)
                return
            except MoEError as exc:
                await deltas.aclose()
                run.record_fallback(name, exc)
                if position == len(names) - 1:
                    run.note(f"text: every expert failed ({', '.join(names)}); answered without it")
                continue
            answered.append(name)
            try:
                yield first
                async for delta in deltas:
                    yield delta
            finally:
                await deltas.aclose()
            return

    async def _image(self, run: Run, names: list[str]) -> ExpertResult | None:
        return await self._first(run, "image", names) if names else None

    async def _speech(
        self, run: Run, names: list[str], text: ExpertResult | None
    ) -> ExpertResult | None:
        extras = run.request.upstream_extras()
        requested = extras.get("audio") if isinstance(extras.get("audio"), dict) else {}
        voice = requested.get("voice") or extras.get("voice") or self.options.voice
        audio = {"voice": voice, "format": "mp3"}
        if text is not None and text.content:
            script = text.content
            if len(script) > self.options.max_speech_chars:
                script = script[: self.options.max_speech_chars]
                run.note(f"speech: read the first {self.options.max_speech_chars} characters")
            request = ChatRequest.model_validate(
                {
                    "messages": [
                        ChatMessage(role="system", content=READ_ALOUD),
                        ChatMessage(role="user", content=script),
                    ],
                    "modalities": ["text", "audio"],
                    "audio": audio,
                },
                strict=False,
            )
        else:
            request = run.request.model_copy(
                update={"modalities": ["text", "audio"], "audio": audio}
            )
        return await self._first(run, "speech", names, request)

    def _merge(
        self,
        run: Run,
        groups: _Groups,
        text: ExpertResult | None,
        images: ExpertResult | None,
        audio: ExpertResult | None,
    ) -> ExpertResult:
        pictures: list[ImageOutput] = images.images if images else []
        speech: list[AudioOutput] = audio.audio if audio else []
        if text is None and not pictures and not speech:
            errors = "; ".join(f"{r.expert}: {r.error}" for r in run.fallbacks)
            raise UpstreamError(f"every modality failed: {errors}")
        if text is not None:
            content = text.content
        elif speech and audio is not None:
            content = audio.content
        else:
            content = images.content if images else ""
        if groups.text and text is None and content:
            content = f"(The text answer is missing: its models failed.) {content}"
        return ExpertResult(
            content=content,
            finish_reason=text.finish_reason if text else "stop",
            reasoning_content=text.reasoning_content if text else None,
            model=text.model if text else None,
            images=pictures,
            audio=speech,
        )
