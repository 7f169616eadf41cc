"""Rendering canonical answers as OpenAI's ``chat.completion`` and ``chat.completion.chunk``."""

from __future__ import annotations

from typing import Any

import orjson

from moe_core import Delta, MoEError, MoEMetadata, MoEResponse, Usage


def completion(response: MoEResponse) -> dict[str, Any]:
    result = response.result
    message: dict[str, Any] = {"role": "assistant", "content": result.content}
    if result.reasoning_content:
        message["reasoning_content"] = result.reasoning_content
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    body = {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created,
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(result.usage),
        "system_fingerprint": None,
        # The metadata's fields as they are (plain values, rendered by orjson several times
        # faster than pydantic would); json_response renders the few models inside them.
        "moe_metadata": {**response.metadata.__dict__, "modalities": result.modalities()},
    }
    # Generated media travel beside the chat completion, as the Pollinations seed's clients read
    # them; OpenAI SDKs keep unknown top-level keys (``completion.model_extra``).
    if result.images:
        body["images"] = [image.model_dump(exclude_none=True) for image in result.images]
    if result.audio:
        body["audio"] = [audio.model_dump(exclude_none=True) for audio in result.audio]
    return body


class ChunkWriter:
    """Turns deltas into SSE ``data:`` frames of one streamed completion."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
        self.model = model

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**self._head, "model": self.model, "choices": choices, **extra}
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
        if delta.reasoning_content:
            body["reasoning_content"] = delta.reasoning_content
        if delta.tool_calls:
            body["tool_calls"] = delta.tool_calls
        media: dict[str, Any] = {}
        if delta.images:
            media["images"] = [image.model_dump(exclude_none=True) for image in delta.images]
        if delta.audio:
            media["audio"] = [audio.model_dump(exclude_none=True) for audio in delta.audio]
        if not body and not media:
            return None
        return self._frame([{"index": 0, "delta": body, "finish_reason": None}], **media)

    def finish(
        self,
        finish_reason: str,
        metadata: MoEMetadata | None,
        modalities: dict[str, Any] | None = None,
    ) -> bytes:
        extra: dict[str, Any] = {}
        if metadata is not None:
            extra["moe_metadata"] = metadata.model_dump(mode="json")
            if modalities is not None:
                extra["moe_metadata"]["modalities"] = modalities
        return self._frame([{"index": 0, "delta": {}, "finish_reason": finish_reason}], **extra)

    def usage(self, usage: Usage) -> bytes:
        return self._frame([], usage=usage.model_dump())

    @staticmethod
    def error(error: MoEError) -> bytes:
        return b"data: " + orjson.dumps(error.envelope()) + b"\n\n"

    DONE = b"data: [DONE]\n\n"


def _usage(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
