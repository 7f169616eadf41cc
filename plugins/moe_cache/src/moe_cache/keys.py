"""What makes two calls the same question to the same expert: the cache's keys.

A key hashes the request exactly as the expert gets it (after the gate's overrides and the
preparers), minus what cannot change the answer: streaming, the caller's identity, routing
hints, request metadata and the ``model`` asked for (the expert, not the name it was reached
by, decides the model). It also hashes the expert's kind and options, so that changing an
expert's configuration (another upstream model, another system prompt) never serves an answer
the old configuration gave; a persistent store would otherwise keep serving it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
from pydantic import BaseModel

from moe_core.models import ChatRequest

VERSION = b"moe-cache/1\0"
"""Part of every key: a change in how keys are made never matches an older entry."""

IGNORED = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "user",
        "moe",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)
"""Request fields that change how an answer is delivered or recorded, never what it says."""


@dataclass(frozen=True, slots=True)
class CallKey:
    """The keys of one call: the exact one, and those semantic matching compares within."""

    exact: str
    """Hex digest of the expert's configuration and the whole canonical request."""
    context: str | None = None
    """Hex digest of everything but the last user question (semantic mode only)."""
    question: str | None = None
    """The last user question's text, which semantic matching embeds."""


def fingerprint(kind: str, options: BaseModel) -> bytes:
    """A digest of an expert's configuration: its kind and every option."""
    try:
        dumped = options.model_dump_json().encode()
    except Exception:  # an option pydantic cannot serialise: its repr still tells them apart
        dumped = repr(options).encode()
    return hashlib.sha256(kind.encode() + b"\0" + dumped).digest()


def is_sampled(request: ChatRequest) -> bool:
    """Whether the answer is meant to vary between calls: a temperature unset (the model's
    default, usually 1) or above zero, and no ``seed`` to make it reproducible."""
    temperature = request.temperature
    return (temperature is None or temperature > 0) and request.seed is None


def call_key(request: ChatRequest, expert: bytes, *, semantic: bool = False) -> CallKey:
    """The keys of ``request`` to the expert whose :func:`fingerprint` is ``expert``."""
    body = request.model_dump(mode="json", exclude=IGNORED, exclude_none=True)
    exact = _digest(expert, body)
    if not semantic:
        return CallKey(exact)
    index, question = _last_question(request)
    if question is None:
        return CallKey(exact)
    # model_dump made fresh dicts: rewriting this copy leaves the request as it was.
    body["messages"][index] = {"role": "user", "content": None}
    return CallKey(exact, context=_digest(expert + b"semantic\0", body), question=question)


def _last_question(request: ChatRequest) -> tuple[int, str | None]:
    """The last user message's position and text; no text when it holds more than text (an
    image's question matched by its words alone would get another image's answer)."""
    for index in range(len(request.messages) - 1, -1, -1):
        message = request.messages[index]
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, list) and any(part.type != "text" for part in content):
            return index, None
        text = message.text()
        return index, text or None
    return 0, None


def _digest(expert: bytes, body: object) -> str:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(VERSION + expert + canonical).hexdigest()
