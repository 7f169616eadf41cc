"""The ``describe-images`` preparer: images in words, for experts that cannot see them.

When the expert about to be called reads no images (its card has neither ``supports_vision``
nor ``image`` in ``modalities_in``) and the request has image parts, the configured describer
(any expert that reads images: an OpenAI-compatible vision model, a Pollinations vision model,
the offline ``image-facts`` expert) describes each image, all of them at once, and the
description replaces the image for that call. Each image is described once per request however
many experts are called. An image that cannot be described becomes a placeholder saying so,
never a raw image the expert cannot read; ``moe_metadata.notes`` says what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from moe_context.common import (
    PerRun,
    helper_call,
    image_url,
    in_helper_call,
    parts_of,
    reads_images,
    replace_parts,
    text_part,
)
from moe_core import (
    ChatMessage,
    ChatRequest,
    ConfigError,
    ExpertCard,
    MoEError,
    Options,
    Preparer,
    Run,
    require_known_experts,
)
from moe_core.models import ContentPart

DESCRIBE_PROMPT = (
    "Describe this image for someone who cannot see it: what it shows, its layout, and every "
    "piece of text in it, word for word. Be factual and complete; do not guess beyond what is "
    "visible."
)
QUESTION = "\n\nThe user's message that came with it, for what to pay attention to: {question}"


class DescribeImagesOptions(Options):
    describer: str = Field(description="An expert that reads images")
    prompt: str = Field(DESCRIBE_PROMPT, description="What the describer is asked")
    with_question: bool = Field(True, description="Tell the describer what the user asked")
    max_images: int = Field(8, ge=1, le=64, description="Images described per request at most")
    max_tokens: int = Field(600, ge=16, description="Longest description, in tokens")


@dataclass(frozen=True)
class Description:
    text: str | None
    error: str | None = None


class DescribeImagesPreparer(Preparer):
    """Replaces images with a describer's words for experts that cannot see."""

    options: DescribeImagesOptions
    provides = frozenset({"vision"})

    def __init__(self, name: str, options: DescribeImagesOptions) -> None:
        super().__init__(name, options)
        self._described: PerRun[Description] = PerRun()
        self._noted: PerRun[None] = PerRun()

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        describer = self.options.describer
        require_known_experts(experts, f"preparers.{self.name}", {"describer": describer})
        if not reads_images(experts[describer]):
            raise ConfigError(
                f"preparers.{self.name}.describer: expert {describer!r} reads no images (its "
                "card has neither supports_vision nor 'image' in modalities_in); name a vision "
                "expert, or set its card"
            )

    async def prepare(self, run: Run, expert: str, request: ChatRequest) -> ChatRequest:
        if in_helper_call() or reads_images(run.card(expert)):
            return request
        found = [(m, p, image_url(part)) for m, p, part in parts_of(request, "image_url")]
        if not found:
            return request
        urls = list(dict.fromkeys(url for _, _, url in found if url))
        described = urls[: self.options.max_images]
        question = run.request.last_user_text()
        descriptions = await asyncio.gather(
            *(
                self._described.once(run, url, lambda url=url: self._describe(run, url, question))
                for url in described
            )
        )
        by_url = dict(zip(described, descriptions, strict=True))
        replacements: dict[tuple[int, int], ContentPart] = {}
        for m, p, url in found:
            number = urls.index(url) + 1 if url else 0
            replacements[(m, p)] = text_part(self._words(number, by_url.get(url or "")))
        if self._noted.first_time(run, expert):
            self._note(run, expert, list(by_url.values()), len(urls))
        return replace_parts(request, replacements)

    async def _describe(self, run: Run, url: str, question: str) -> Description:
        prompt = self.options.prompt
        if self.options.with_question and question.strip():
            prompt += QUESTION.format(question=question.strip())
        content = [text_part(prompt), ContentPart(type="image_url", image_url={"url": url})]
        request = ChatRequest(
            model=self.options.describer,
            messages=[ChatMessage(role="user", content=content)],
            max_tokens=self.options.max_tokens,
        )
        try:
            result = await helper_call(run, self.options.describer, request)
        except MoEError as exc:
            return Description(text=None, error=exc.message)
        text = result.content.strip()
        return Description(text=text) if text else Description(None, "the description was empty")

    def _words(self, number: int, description: Description | None) -> str:
        describer = self.options.describer
        if number == 0:
            return "[An image part without a URL was left out.]"
        if description is None:
            return (
                f"[Image {number} was left out: only {self.options.max_images} images are "
                "described per request.]"
            )
        if description.text is None:
            return (
                f"[Image {number} could not be described by {describer} "
                f"({description.error}); it was left out.]"
            )
        return f"[Image {number}, as described by {describer}: {description.text}]"

    def _note(self, run: Run, expert: str, descriptions: list[Description], total: int) -> None:
        describer = self.options.describer
        ok = sum(d.text is not None for d in descriptions)
        run.note(
            f"{self.name}: {expert!r} reads no images; it got {ok} of {total} image(s) as "
            f"descriptions by {describer!r}"
        )
        for number, description in enumerate(descriptions, 1):
            if description.text is None and self._noted.first_time(run, ("failed", number)):
                run.note(
                    f"{self.name}: image {number} could not be described by {describer!r}: "
                    f"{description.error}; a placeholder took its place"
                )
