"""What this plugin's preparers share: work done once per request, helper calls, message edits.

A preparer runs before *every* expert call of a request, and a chain or a vote calls several
experts, so anything costly (describing an image, fetching a page, searching) is done once per
request and shared by every call: :class:`PerRun` keeps it, keyed weakly by the request's
:class:`~moe_core.Run`, so it goes away with the request.

The calls a preparer makes itself (the describer, the search decider) go through ``run.call``
too, and so through every preparer again: :func:`helper_call` marks them so that this plugin's
preparers pass them through unchanged instead of preparing (or deciding about) their own helpers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

from moe_core import ChatMessage, ChatRequest, ExpertCard, ExpertResult, Run
from moe_core.models import ContentPart

T = TypeVar("T")

_HELPER: ContextVar[bool] = ContextVar("moe_context_helper_call", default=False)


def in_helper_call() -> bool:
    """True while one of this plugin's preparers is calling an expert for its own needs."""
    return _HELPER.get()


async def helper_call(run: Run, expert: str, request: ChatRequest) -> ExpertResult:
    """Call ``expert`` through ``run`` (timeouts, tracking, cost) for a preparer's own needs."""
    token = _HELPER.set(True)
    try:
        return await run.call(expert, request)
    finally:
        _HELPER.reset(token)


class PerRun(Generic[T]):
    """Results computed once per request and key, shared by every expert call of the request.

    Concurrent callers (a parallel vote) await the same task; the task is shielded so that one
    caller giving up (a lost race) does not cancel it for the others.
    """

    def __init__(self) -> None:
        self._jobs: WeakKeyDictionary[Run, dict[Hashable, asyncio.Future[T]]] = WeakKeyDictionary()
        self._seen: WeakKeyDictionary[Run, set[Hashable]] = WeakKeyDictionary()

    async def once(self, run: Run, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        jobs = self._jobs.setdefault(run, {})
        job = jobs.get(key)
        if job is None:
            job = jobs[key] = asyncio.ensure_future(make())
        return await asyncio.shield(job)

    def first_time(self, run: Run, key: Hashable) -> bool:
        """True the first time ``key`` is seen for this request (to note something once)."""
        seen = self._seen.setdefault(run, set())
        if key in seen:
            return False
        seen.add(key)
        return True


def reads_images(card: ExpertCard) -> bool:
    return card.supports_vision or "image" in card.modalities_in


def parts_of(request: ChatRequest, kind: str) -> Iterator[tuple[int, int, ContentPart]]:
    """Every content part of type ``kind``: (message index, part index, part)."""
    for m, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for p, part in enumerate(message.content):
                if part.type == kind:
                    yield m, p, part


def image_url(part: ContentPart) -> str | None:
    url = (part.image_url or {}).get("url")
    return url if isinstance(url, str) and url else None


def text_part(text: str) -> ContentPart:
    return ContentPart(type="text", text=text)


def replace_parts(
    request: ChatRequest, replacements: dict[tuple[int, int], ContentPart]
) -> ChatRequest:
    """The request with the parts at (message, part) replaced.

    A message left with text parts only becomes a plain string: every text-only backend reads
    that, while some refuse a list of parts."""
    messages = list(request.messages)
    for m in sorted({m for m, _ in replacements}):
        message = messages[m]
        assert isinstance(message.content, list)
        parts = [replacements.get((m, p), part) for p, part in enumerate(message.content)]
        content: str | list[ContentPart] = parts
        if all(part.type == "text" for part in parts):
            content = "\n\n".join(part.text or "" for part in parts)
        messages[m] = message.model_copy(update={"content": content})
    return request.model_copy(update={"messages": messages})


def add_context(request: ChatRequest, card: ExpertCard, block: str) -> ChatRequest:
    """The request with ``block`` (pages, search results) where ``card``'s expert reads it.

    A system message after the leading ones, so that it is read as context rather than as the
    user's words; for an expert that takes no system prompt, in front of the last user message.
    """
    messages = list(request.messages)
    if card.supports_system_prompt:
        at = 0
        while at < len(messages) and messages[at].role in ("system", "developer"):
            at += 1
        messages.insert(at, ChatMessage(role="system", content=block))
        return request.model_copy(update={"messages": messages})
    for at in range(len(messages) - 1, -1, -1):
        message = messages[at]
        if message.role != "user":
            continue
        if isinstance(message.content, list):
            content: str | list[ContentPart] = [text_part(block), *message.content]
        else:
            content = f"{block}\n\n{message.content or ''}"
        messages[at] = message.model_copy(update={"content": content})
        break
    return request.model_copy(update={"messages": messages})


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word where possible, saying that it was cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ", int(limit * 0.8))
    return (cut[:space] if space > 0 else cut) + " […]"


def cite(run: Run, preparer: str, label: str, title: str | None, url: str) -> None:
    """Tell the caller which source the experts were given, in ``moe_metadata.sources``."""
    run.sources.append({"id": label, "title": title, "url": url, "by": preparer})
