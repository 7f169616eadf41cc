"""Rendering canonical answers as OpenAI's ``response`` object and its output items.

An answer becomes, in order: a ``reasoning`` item when the expert reported its reasoning, a
``message`` item with the text (always, unless the answer is tool calls alone), then one
``function_call`` item per tool call. ``finish_reason: length`` makes the response
``incomplete`` (``max_output_tokens``), as OpenAI reports a cut answer. The same items, read
back, are the assistant's turn when a later request continues the conversation.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from moe_core import ExpertResult, MoEMetadata, Usage
from moe_openai_compat.responses_input import ResponsesRequest

Item = dict[str, Any]


def new_id(prefix: str) -> str:
    """An id as OpenAI writes them: ``resp_…``, ``msg_…``, ``fc_…``, ``call_…``."""
    return f"{prefix}_{uuid.uuid4().hex}"


ITEM_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def listed_items(value: Any) -> list[dict[str, Any]]:
    """A request's ``input`` as ``GET /v1/responses/{id}/input_items`` lists it (``value`` was
    checked by ``input_messages``): a string is one user message; every item gets an id unless
    it came with one, and a message's text becomes content parts, ``input_text`` for what the
    caller wrote and ``output_text`` for an assistant's turn, as OpenAI lists them."""
    if not value:
        return []
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    items = []
    for item in value:
        kind = item.get("type", "message")
        listed = {
            **item,
            "type": kind,
            "id": item.get("id") or new_id(ITEM_ID_PREFIXES.get(kind, "item")),
        }
        if kind == "message" and isinstance(item.get("content"), str):
            if item["role"] == "assistant":
                listed["content"] = [text_part(item["content"])]
            else:
                listed["content"] = [{"type": "input_text", "text": item["content"]}]
        listed.setdefault("status", "completed")
        items.append(listed)
    return items


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str = "completed") -> Item:
    content = [] if text is None else [text_part(text)]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def reasoning_item(item_id: str, text: str | None) -> Item:
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> Item:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(result: ExpertResult) -> list[Item]:
    items: list[Item] = []
    if result.reasoning_content:
        items.append(reasoning_item(new_id("rs"), result.reasoning_content))
    if result.content or not result.tool_calls:
        items.append(message_item(new_id("msg"), result.content))
    for call in result.tool_calls or []:
        function = call.get("function") or {}
        items.append(
            function_call_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                function.get("name") or "",
                function.get("arguments") or "",
            )
        )
    return items


def assistant_message(items: list[Item]) -> dict[str, Any] | None:
    """The assistant's turn that ``items`` make, as a chat message, or ``None`` if empty."""
    text = "".join(
        part["text"]
        for item in items
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in items
        if item["type"] == "function_call"
    ]
    if not text and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def status_of(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """The response's ``status`` and ``incomplete_details`` for a chat finish reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def usage_body(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    request: ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[Item],
    usage: Usage | None = None,
    incomplete_details: dict[str, str] | None = None,
    error: dict[str, Any] | None = None,
    metadata: MoEMetadata | None = None,
) -> dict[str, Any]:
    """The ``response`` object, echoing the request's settings as OpenAI does."""
    text_format = {"type": "text"}
    if request.text is not None and request.text.format is not None:
        text_format = request.text.format.model_dump(by_alias=True, exclude_none=True)
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": (request.reasoning or {}).get("effort"), "summary": None},
        "store": request.store,
        "temperature": request.temperature,
        "text": {"format": text_format},
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": request.tools or [],
        "top_p": request.top_p,
        "truncation": request.truncation or "disabled",
        "usage": usage_body(usage),
        "user": request.user,
        "metadata": request.metadata or {},
    }
    if status in ("completed", "incomplete"):
        body["completed_at"] = int(time.time())
    if metadata is not None:
        body["moe_metadata"] = metadata.model_dump(mode="json")
    return body
