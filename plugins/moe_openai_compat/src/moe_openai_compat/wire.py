"""Rendering canonical answers as OpenAI's ``chat.completion`` and ``chat.completion.chunk``.

What an OpenAI upstream sent beyond the canonical fields (logprobs, refusal, annotations, audio,
system_fingerprint, service_tier, n choices) is rendered back where OpenAI puts it, from the
extra members ``reading`` names; a message that is only tool calls (or a refusal) has
``content: null``, as OpenAI's has.
"""

from __future__ import annotations

from typing import Any

import orjson

from moe_core import Delta, MoEError, MoEMetadata, Usage
from moe_core.http import json_bytes


class ChunkWriter:
    """Turns deltas into SSE ``data:`` frames of one streamed completion, and keeps what its
    last frames report: the finish reason, the usage, the modalities it carried.

    A frame is rendered on every delta of every stream, so the members every frame repeats
    (id, object, created, model) are rendered once, as the frame's opening bytes.
    """

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._opening = _opening(self._head)
        self.finish_reason = "stop"
        self.usage: Usage | None = None
        self.modalities: dict[str, Any] = {"text": False, "images": 0, "audio": 0}

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**self._head, "choices": choices, **extra}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def role(self) -> bytes:
        return self._frame(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )

    def delta(self, delta: Delta) -> bytes | None:
        """The frame for a content delta, or ``None`` if it carries nothing to show."""
        body: dict[str, Any] = {}
        if delta.content:
            body["content"] = delta.content
            self.modalities["text"] = True
        if delta.reasoning_content:
            body["reasoning_content"] = delta.reasoning_content
        if delta.tool_calls:
            body["tool_calls"] = delta.tool_calls
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        choice: dict[str, Any] = {"index": 0, "delta": body, "finish_reason": None}
        extra = delta.model_extra
        if extra:
            self._upstream_members(extra, body, choice, delta.finish_reason)
        if delta.images or delta.audio:
            return self._frame([choice], **self._media(delta))
        if not body and len(choice) == 3 and not choice["finish_reason"]:
            return None
        return self._opening + orjson.dumps(choice) + b"]}\n\n"

    def _media(self, delta: Delta) -> dict[str, Any]:
        """Generated images and audio, beside the choices as the Pollinations seed's clients
        read them."""
        media: dict[str, Any] = {}
        if delta.images:
            media["images"] = [image.model_dump(exclude_none=True) for image in delta.images]
            self.modalities["images"] += len(delta.images)
        if delta.audio:
            media["audio"] = [audio.model_dump(exclude_none=True) for audio in delta.audio]
            self.modalities["audio"] += len(delta.audio)
        return media

    def _upstream_members(
        self, extra: dict[str, Any], body: dict[str, Any], choice: dict[str, Any], finish: Any
    ) -> None:
        """Put what the upstream's chunk carried beyond the canonical fields where OpenAI has
        it; the completion's own members go on every frame from here on, as OpenAI's do."""
        head = self._head
        for key in ("system_fingerprint", "service_tier"):
            if key in extra and head.get(key) != extra[key]:
                # Before "model", where OpenAI has them; the opening is rendered again.
                model = head.pop("model")
                head[key], head["model"] = extra[key], model
                self._opening = _opening(head)
        body.update(extra.get("delta") or _NONE)
        if "logprobs" in extra:
            choice["logprobs"] = extra["logprobs"]
        index = extra.get("index")
        if index:
            # The stream's last frame finishes the first choice; the others finish here.
            choice["index"], choice["finish_reason"] = index, finish

    def end(self, metadata: MoEMetadata | None, *, include_usage: bool) -> bytes:
        """The stream's last frames, in one piece: the finish (with ``moe_metadata``), the
        usage when the request asked for it, and ``[DONE]``."""
        choice = {"index": 0, "delta": {}, "finish_reason": self.finish_reason}
        chunk: dict[str, Any] = {**self._head, "choices": [choice]}
        if metadata is not None:
            # The metadata's fields as they are, rendered as the non-streamed answer's are
            # (json_bytes renders the few models inside them): a third of model_dump's cost.
            chunk["moe_metadata"] = {**metadata.__dict__, "modalities": self.modalities}
        frames = b"data: " + json_bytes(chunk) + b"\n\n"
        if include_usage:
            frames += self._frame([], usage=(self.usage or Usage()).model_dump())
        return frames + self.DONE

    @staticmethod
    def error(error: MoEError) -> bytes:
        return b"data: " + orjson.dumps(error.envelope()) + b"\n\n"

    DONE = b"data: [DONE]\n\n"


def _opening(head: dict[str, Any]) -> bytes:
    """A frame's bytes up to its first choice: ``data: {<head>,"choices":[``."""
    return b"data: " + orjson.dumps(head)[:-1] + b',"choices":['


_NONE: dict[str, Any] = {}
