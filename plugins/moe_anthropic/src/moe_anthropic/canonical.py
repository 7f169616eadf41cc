"""An Anthropic Messages request as the gateway's canonical (OpenAI-shaped) request.

Everything downstream sees the same request whichever frontend it came through, so any expert
can answer an Anthropic client: ``system`` becomes a system message, ``tool_use`` blocks an
assistant's ``tool_calls``, each ``tool_result`` a ``tool`` message, images ``image_url`` parts
(base64 sources as ``data:`` URLs), tools OpenAI function tools.
"""

from __future__ import annotations

from typing import Any

import orjson

from moe_anthropic.schema import (
    Base64Source,
    CustomTool,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)
from moe_core import InvalidRequest


def to_canonical(request: MessagesRequest) -> dict[str, Any]:
    """The canonical request body (validated by the gateway's own parser afterwards)."""
    messages: list[dict[str, Any]] = []
    if request.system:
        system = request.system
        text = system if isinstance(system, str) else "\n".join(b.text for b in system)
        messages.append({"role": "system", "content": text})
    for index, message in enumerate(request.messages):
        messages.extend(_messages(message, index))
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": request.stream,
    }
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        # Not an OpenAI parameter, but one many OpenAI-compatible servers take; an upstream that
        # does not refuses it, and the caller learns that from its 400.
        "top_k": request.top_k,
        "stop": request.stop_sequences or None,
        "user": request.metadata.user_id if request.metadata else None,
        "moe": request.moe.model_dump(exclude_unset=True) if request.moe else None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        body.update(_tool_choice(request.tool_choice))
    output = request.output_config
    if output is not None and output.format is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output.format.schema_, "strict": True},
        }
    return body


def _messages(message: MessageParam, index: int) -> list[dict[str, Any]]:
    """One Anthropic message as canonical messages: tool results go first, each as its own
    ``tool`` message (OpenAI wants them right after the assistant's tool calls), then whatever
    else the message says."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append(_image(block))
        elif isinstance(block, ToolUseBlock):
            if message.role != "assistant":
                raise _misplaced(index, "tool_use", "assistant")
            tool_calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": _json(block.input)},
                }
            )
        elif isinstance(block, ToolResultBlock):
            if message.role != "user":
                raise _misplaced(index, "tool_result", "user")
            text, images = _tool_result(block)
            tool_messages.append(
                {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}
            )
            parts.extend(images)  # OpenAI tool messages carry text only: images follow them
        elif isinstance(block, ThinkingBlock):
            continue
    result = list(tool_messages)
    if message.role == "assistant":
        if parts or tool_calls:
            text = "".join(part.get("text", "") for part in parts)
            assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tool_calls:
                assistant["tool_calls"] = tool_calls
            result.append(assistant)
    elif parts:
        only_text = all(part["type"] == "text" for part in parts)
        content: Any = "\n".join(part["text"] for part in parts) if only_text else parts
        result.append({"role": "user", "content": content})
    return result


def _image(block: ImageBlock) -> dict[str, Any]:
    source = block.source
    if isinstance(source, Base64Source):
        url = f"data:{source.media_type};base64,{source.data}"
    else:
        url = source.url
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: ToolResultBlock) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(block.content, str):
        return block.content, []
    text = "\n".join(part.text for part in block.content if isinstance(part, TextBlock))
    images = [_image(part) for part in block.content if isinstance(part, ImageBlock)]
    return text, images


def _tool(tool: CustomTool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequest("tool_choice.name: Field required", param="tool_choice.name")
        chosen: Any = {"type": "function", "function": {"name": choice.name}}
    else:
        chosen = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    body: dict[str, Any] = {"tool_choice": chosen}
    if choice.disable_parallel_tool_use:
        body["parallel_tool_calls"] = False
    return body


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _misplaced(index: int, block: str, role: str) -> InvalidRequest:
    param = f"messages.{index}.content"
    return InvalidRequest(
        f"{param}: {block} blocks may only appear in {role} messages", param=param
    )
