"""Canonical answers rendered as Anthropic's ``message`` and its server-sent events.

Anthropic's SDKs skip an SSE frame without an ``event:`` line, so every frame names its type,
and they rebuild the message from the events, so block indexes and the order ``message_start``,
blocks (start, deltas, stop), ``message_delta``, ``message_stop`` are what a client relies on.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from moe_anthropic.errors import error_body
from moe_core import Delta, MoEError, MoEMetadata, MoEResponse, UpstreamError, Usage

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None, stop_sequence: str | None) -> str:
    """Anthropic's ``stop_reason`` for a canonical ``finish_reason``."""
    if stop_sequence:
        return "stop_sequence"
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage(value: Usage | None) -> dict[str, int]:
    value = value or Usage()
    return {"input_tokens": value.prompt_tokens, "output_tokens": value.completion_tokens}


def message(response: MoEResponse, message_id: str, *, thinking: bool) -> dict[str, Any]:
    """The ``message`` object of a complete answer, with ``moe_metadata`` beside it (the SDKs
    keep unknown keys: ``message.model_extra["moe_metadata"]``)."""
    result = response.result
    content: list[dict[str, Any]] = []
    if thinking and result.reasoning_content:
        content.append({"type": "thinking", "thinking": result.reasoning_content, "signature": ""})
    if result.content:
        content.append({"type": "text", "text": result.content})
    content.extend(_tool_use(call) for call in result.tool_calls or ())
    stop_sequence = result.stop_sequence
    metadata = {**response.metadata.model_dump(mode="json"), "modalities": result.modalities()}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_reason(result.finish_reason, stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": usage(result.usage),
        "moe_metadata": metadata,
    }


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id") or new_tool_use_id(),
        "name": function.get("name", ""),
        "input": tool_input(function.get("arguments")),
    }


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments (OpenAI: a JSON string) as Anthropic's ``input`` object."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamError(
            "the expert called a tool with arguments that are not a JSON object: "
            f"{arguments[:200]!r}"
        )
    return value


def new_tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventWriter:
    """Turns the deltas of one streamed answer into Anthropic's events.

    Text, thinking and each tool call are content blocks of their own, numbered in the order
    they start; a block is stopped when the next one starts. OpenAI-shaped tool-call deltas
    name their call by ``index``; a delta without one carries a whole call (an expert that
    cannot stream answers in one piece).
    """

    def __init__(self, message_id: str, model: str, *, thinking: bool) -> None:
        self._message_id = message_id
        self.model = model
        self._thinking = thinking
        self._blocks = 0
        self._open: str | None = None  # the kind of the block last started, until stopped
        self._tool_blocks: dict[int, int] = {}  # the call's index -> its block's index

    def start(self) -> bytes:
        """``message_start`` (usage comes with ``message_delta``: it is known at the end), then
        a ``ping`` as Anthropic sends."""
        skeleton = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": skeleton}) + event(
            "ping", {"type": "ping"}
        )

    def delta(self, delta: Delta) -> bytes:
        frames: list[bytes] = []
        if self._thinking and delta.reasoning_content:
            self._continue(
                "thinking", {"type": "thinking", "thinking": "", "signature": ""}, frames
            )
            frames.append(
                self._block_delta({"type": "thinking_delta", "thinking": delta.reasoning_content})
            )
        if delta.content:
            self._continue("text", {"type": "text", "text": ""}, frames)
            frames.append(self._block_delta({"type": "text_delta", "text": delta.content}))
        for position, call in enumerate(delta.tool_calls or ()):
            self._tool_call(call, position, frames)
        return b"".join(frames)

    def _tool_call(self, call: dict[str, Any], position: int, frames: list[bytes]) -> None:
        function = call.get("function") or {}
        index = call.get("index")
        whole = index is None
        block = None if whole else self._tool_blocks.get(index)
        if block is None:
            started = {
                "type": "tool_use",
                "id": call.get("id") or new_tool_use_id(),
                "name": function.get("name") or "",
                "input": {},
            }
            self._start("tool_use", started, frames)
            block = self._blocks - 1
            if not whole:
                self._tool_blocks[index] = block
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = orjson.dumps(arguments).decode()
        if arguments:
            frames.append(
                self._block_delta(
                    {"type": "input_json_delta", "partial_json": arguments}, index=block
                )
            )

    def _continue(self, kind: str, block: dict[str, Any], frames: list[bytes]) -> None:
        if self._open != kind:
            self._start(kind, block, frames)

    def _start(self, kind: str, block: dict[str, Any], frames: list[bytes]) -> None:
        self._stop(frames)
        frames.append(
            event(
                "content_block_start",
                {"type": "content_block_start", "index": self._blocks, "content_block": block},
            )
        )
        self._blocks += 1
        self._open = kind

    def _stop(self, frames: list[bytes]) -> None:
        if self._open is not None:
            frames.append(
                event(
                    "content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1}
                )
            )
            self._open = None

    def _block_delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        at = self._blocks - 1 if index is None else index
        return event(
            "content_block_delta", {"type": "content_block_delta", "index": at, "delta": delta}
        )

    def finish(
        self,
        finish_reason: str | None,
        stop_sequence: str | None,
        usage_: Usage | None,
        metadata: MoEMetadata | None,
        modalities: dict[str, Any],
    ) -> bytes:
        frames: list[bytes] = []
        self._stop(frames)
        data: dict[str, Any] = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(finish_reason, stop_sequence),
                "stop_sequence": stop_sequence,
            },
            "usage": usage(usage_),
        }
        if metadata is not None:
            data["moe_metadata"] = {**metadata.model_dump(mode="json"), "modalities": modalities}
        frames.append(event("message_delta", data))
        frames.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(frames)

    @staticmethod
    def error(error: MoEError, request_id: str | None) -> bytes:
        return event("error", error_body(error, request_id))
