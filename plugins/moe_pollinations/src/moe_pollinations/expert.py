"""The ``pollinations`` expert: one Pollinations model, text or image, described by the listing.

Text models answer through ``POST /openai`` (chat, streaming, image parts for vision models,
spoken answers with a voice for models that output audio). Image models answer through
``GET /prompt/{prompt}``: the picture comes back base64-encoded in ``images``, and an image in the
request's last user message makes it an edit (``image=`` is passed on). The card comes from the
listing, so a config only has to name the model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from pydantic import Field

from moe_core import (
    ChatRequest,
    ConfigError,
    Delta,
    Expert,
    ExpertCard,
    ExpertResult,
    InvalidRequest,
    MoEError,
    Usage,
)
from moe_core.models import AudioOutput, ImageOutput
from moe_pollinations.client import ConnectionOptions, PollinationsClient
from moe_pollinations.registry import ModelInfo, cache_path, is_fresh, load_listing, read_cache

log = structlog.get_logger(__name__)

DEFAULT_VOICE = "nova"
_REFRESHED: set[Path] = set()  # caches this process already refreshed


class PollinationsOptions(ConnectionOptions):
    model: str | None = Field(
        None, description="The Pollinations model; default: the expert's name"
    )
    request_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Limit of each Pollinations call; default suits the model (images: 60 s "
        "for flux, 360 s for gptimage). The gateway's timeout_s also applies: the smaller wins",
    )
    cache_dir: str | None = Field(
        None,
        description="Where the model listing is cached; default: $MOE_CACHE_DIR/pollinations, "
        "else $XDG_CACHE_HOME/moe/pollinations, else ~/.cache/moe/pollinations",
    )
    listing_ttl_s: float = Field(86_400.0, gt=0, description="Age after which it is refreshed")
    refresh_listing: bool = Field(True, description="Refresh a stale listing cache on start")
    voice: str = Field(DEFAULT_VOICE, description="Voice for spoken answers (audio models)")
    width: int = Field(1024, ge=16, le=2048, description="Image width")
    height: int = Field(1024, ge=16, le=2048, description="Image height")
    seed: int | None = Field(None, description="Image seed (default: the request's seed)")
    nologo: bool = Field(True, description="Ask for images without the Pollinations logo")
    enhance: bool = Field(False, description="Let Pollinations enhance image prompts")
    private: bool = Field(True, description="Keep generations out of the public feed")


class PollinationsExpert(Expert):
    """A Pollinations model (text, speech or image), its card taken from the model listing."""

    options: PollinationsOptions

    def __init__(self, name: str, options: PollinationsOptions) -> None:
        super().__init__(name, options)
        self.cache = cache_path(options.cache_dir)
        listing = load_listing(self.cache)
        wanted = options.model or name
        try:
            self.info: ModelInfo = listing.get(wanted)
        except KeyError:
            raise ConfigError(
                f"experts.{name}.model: Pollinations has no model {wanted!r} (listing: "
                f"{listing.source}); known: {', '.join(listing.names())}. "
                "Run `moe pollinations sync` if the model is new."
            ) from None
        self.timeout_s = options.request_timeout_s or self.info.default_timeout_s
        if self.info.speaks and self.info.voices and options.voice not in self.info.voices:
            raise ConfigError(
                f"experts.{name}.voice: {options.voice!r} is not a voice of "
                f"{self.info.name}; voices: {', '.join(self.info.voices)}"
            )
        self.client = PollinationsClient(options, who=f"expert {name!r} ({self.info.name})")
        self._refresh: asyncio.Task[bool] | None = None

    def card(self) -> ExpertCard:
        return self.info.card()

    async def start(self) -> None:
        await self.client.start()
        if self.options.refresh_listing and self.cache not in _REFRESHED:
            _REFRESHED.add(self.cache)
            if not is_fresh(read_cache(self.cache), self.options.listing_ttl_s):
                # In the background: an unreachable listing must not delay the expert; the
                # fresh listing is for the next start (cards are fixed once built).
                self._refresh = asyncio.create_task(refresh_listing(self.client, self.cache))

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
            self._refresh = None
        await self.client.close()

    # -- answers ---------------------------------------------------------------------------

    async def generate(self, request: ChatRequest) -> ExpertResult:
        if self.info.kind == "image":
            return await self._image(request)
        payload = await self.client.chat(self._body(request), timeout_s=self.timeout_s)
        choice = payload["choices"][0]
        message = choice["message"]
        audio = []
        spoken = message.get("audio")
        if isinstance(spoken, dict) and spoken.get("data"):
            audio.append(
                AudioOutput(
                    data=spoken["data"],
                    format="audio/mpeg",
                    voice=self._voice(request),
                    transcript=spoken.get("transcript"),
                )
            )
        content = message.get("content")
        if content is None and audio:
            content = audio[0].transcript or ""
        return ExpertResult(
            content=content or "",
            reasoning_content=message.get("reasoning_content"),
            tool_calls=message.get("tool_calls"),
            finish_reason=choice.get("finish_reason") or "stop",
            usage=_usage(payload.get("usage")),
            model=self.info.name,
            audio=audio,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        if self.info.kind == "image" or self._wants_audio(request):
            # Pictures and speech arrive whole; nothing to stream but the finished answer.
            yield Delta.whole(await self.generate(request))
            return
        body = self._body(request)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        async for chunk in self.client.chat_stream(body, timeout_s=self.timeout_s):
            choices = chunk.get("choices") or []
            delta = (choices[0].get("delta") or {}) if choices else {}
            yield Delta(
                content=delta.get("content"),
                reasoning_content=delta.get("reasoning_content"),
                tool_calls=delta.get("tool_calls"),
                finish_reason=choices[0].get("finish_reason") if choices else None,
                usage=_usage(chunk.get("usage")),
                model=self.info.name,
            )

    # -- text ------------------------------------------------------------------------------

    def _wants_audio(self, request: ChatRequest) -> bool:
        extras = request.upstream_extras()
        return "audio" in (extras.get("modalities") or []) or "audio" in extras

    def _voice(self, request: ChatRequest) -> str:
        audio = request.upstream_extras().get("audio")
        if isinstance(audio, dict) and audio.get("voice"):
            return str(audio["voice"])
        return self.options.voice

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        if not self.info.vision and _images_in(request):
            raise InvalidRequest(
                f"{self.info.name} cannot see images; use a vision model", param="messages"
            )
        body = request.model_dump(exclude_none=True, exclude={"moe", "stream", "stream_options"})
        body["model"] = self.info.name
        body.setdefault("private", self.options.private)
        if self.client.referrer:
            body.setdefault("referrer", self.client.referrer)
        if self._wants_audio(request):
            if not self.info.speaks:
                raise InvalidRequest(
                    f"{self.info.name} cannot answer with audio; use a speech model",
                    param="modalities",
                )
            voice = self._voice(request)
            if self.info.voices and voice not in self.info.voices:
                raise InvalidRequest(
                    f"{voice!r} is not a voice of {self.info.name}; voices: "
                    f"{', '.join(self.info.voices)}",
                    param="audio.voice",
                )
            body["modalities"] = ["text", "audio"]
            body["audio"] = {"voice": voice, "format": "mp3"}
        return body

    # -- images ----------------------------------------------------------------------------

    async def _image(self, request: ChatRequest) -> ExpertResult:
        prompt = request.last_user_text().strip()
        if not prompt:
            raise InvalidRequest("an image needs a text prompt in the last user message")
        options = self.options
        extras = request.upstream_extras()
        params: dict[str, Any] = {
            "model": self.info.name,
            "width": extras.get("width", options.width),
            "height": extras.get("height", options.height),
            "seed": options.seed if options.seed is not None else request.seed,
            "nologo": options.nologo,
            "enhance": options.enhance,
            "private": options.private,
        }
        images = _images_in(request)
        if images:
            if "image" not in self.info.input_modalities:
                raise InvalidRequest(
                    f"{self.info.name} cannot edit images; use an image-edit model (kontext)",
                    param="messages",
                )
            params["image"] = images[-1]
        started = time.perf_counter()
        reply = await self.client.image(prompt, params, timeout_s=self.timeout_s)
        log.info(
            "pollinations.image",
            model=self.info.name,
            bytes=len(reply.body),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        what = "Edited image" if images else "Image"
        description = f"{what} by {self.info.name}: {prompt}"
        return ExpertResult(
            content=description,
            model=self.info.name,
            images=[
                ImageOutput(
                    data=base64.b64encode(reply.body).decode("ascii"),
                    description=description,
                    format=reply.content_type,
                    model=self.info.name,
                )
            ],
        )


def _images_in(request: ChatRequest) -> list[str]:
    """URLs (or data URLs) of the images in the last user message."""
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str) or message.content is None:
            return []
        return [
            str(part.image_url.get("url"))
            for part in message.content
            if part.type == "image_url" and part.image_url and part.image_url.get("url")
        ]
    return []


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage.of(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


async def refresh_listing(client: PollinationsClient, path: Path) -> bool:
    """Fetch both listings and write the cache; ``False`` (logged) if Pollinations is unreachable
    or answers something unreadable, in which case the cache is left as it was."""
    from moe_pollinations.registry import write_cache

    try:
        text = await client.models("text")
        image = await client.models("image")
        listing = write_cache(path, text, image)
    except (MoEError, ValueError, OSError) as exc:
        log.warning("pollinations.listing_refresh_failed", path=str(path), error=str(exc))
        return False
    log.info("pollinations.listing_refreshed", path=str(path), models=len(listing.models))
    return True
