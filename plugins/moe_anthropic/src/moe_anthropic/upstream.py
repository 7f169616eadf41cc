"""The canonical request in Anthropic's wire format, and Anthropic's answers back.

What the ``anthropic`` expert sends and reads. The canonical request is OpenAI-shaped, so this
is the reverse of :mod:`moe_anthropic.canonical`: system messages become ``system``, tool calls
``tool_use`` blocks, ``tool`` messages ``tool_result`` blocks in a user turn (consecutive turns
of one role are merged, as Anthropic wants roles to alternate), ``data:`` image URLs base64
sources. Parameters Anthropic has no equivalent for are not sent: it refuses unknown ones.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from moe_core import ChatMessage, ChatRequest, Delta, ExpertResult, InvalidRequest, Usage

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)


def request_body(
    request: ChatRequest, *, model: str, max_tokens: int, system_prompt: str | None, stream: bool
) -> dict[str, Any]:
    """The ``/v1/messages`` body for a canonical request."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        role, blocks = _turn(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not system and system_prompt:
        system.append(system_prompt)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.output_limit or max_tokens,
        "messages": turns,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if stream:
        body["stream"] = True
    if request.temperature is not None:
        # OpenAI's range is 0-2, Anthropic's 0-1: the top of one is the top of the other.
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop_sequences:
        body["stop_sequences"] = request.stop_sequences
    if request.user:
        body["metadata"] = {"user_id": request.user}
    extras = request.upstream_extras()
    if isinstance(extras.get("top_k"), int):
        body["top_k"] = extras["top_k"]
    if extras.get("tools"):
        body["tools"] = [_tool(tool) for tool in extras["tools"]]
        choice = _tool_choice(extras.get("tool_choice"), extras.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
    response_format = extras.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return body


def _turn(message: ChatMessage) -> tuple[str, list[dict[str, Any]]]:
    if message.role in ("tool", "function"):
        block = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id or message.name or "",
            "content": message.text(),
        }
        return "user", [block]
    blocks = _blocks(message)
    if message.role == "assistant":
        for call in message.tool_calls or ():
            function = call.get("function") or {}
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or "",
                    "name": function.get("name") or "",
                    "input": _arguments(function.get("arguments")),
                }
            )
        return "assistant", blocks
    return "user", blocks


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    content = message.content
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text" and part.text:
            blocks.append({"type": "text", "text": part.text})
        elif part.type == "image_url" and part.image_url:
            blocks.append(_image(str(part.image_url.get("url", ""))))
        elif part.type not in ("text", "refusal"):
            raise InvalidRequest(
                f"Anthropic experts cannot read {part.type!r} message parts",
                param="messages",
                code="unsupported_content",
            )
    return blocks


def _image(url: str) -> dict[str, Any]:
    match = _DATA_URL.match(url)
    if match:
        source = {"type": "base64", "media_type": match["type"], "data": match["data"]}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"a tool call's arguments are not a JSON object: {str(arguments)[:200]!r}",
            param="messages",
        )
    return value


def _tool(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise InvalidRequest("Anthropic experts take function tools only", param="tools")
    converted: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    converted: dict[str, Any] | None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        converted = {"type": "tool", "name": name} if name else None
    else:
        converted = (
            {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
            if (choice in ("auto", "required", "none"))
            else None
        )
    if parallel is False:
        converted = converted or {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


def result(payload: dict[str, Any]) -> ExpertResult:
    """An Anthropic ``message`` as a canonical answer (raises ``KeyError``/``TypeError`` on
    something else, which the expert reports as an unreadable answer)."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in payload["content"]:
        kind = block["type"]
        if kind == "text":
            text.append(block["text"])
        elif kind == "thinking":
            thinking.append(block["thinking"])
        elif kind == "tool_use":
            calls.append(_tool_call(block))
    stop = payload.get("stop_reason")
    return ExpertResult(
        content="".join(text),
        reasoning_content="".join(thinking) or None,
        tool_calls=calls or None,
        finish_reason=FINISH_REASONS.get(stop or "end_turn", "stop"),
        stop_sequence=payload.get("stop_sequence"),
        usage=usage(payload.get("usage")),
        model=payload.get("model"),
    )


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": orjson.dumps(block["input"]).decode()},
    }


def usage(raw: Any, input_tokens: int = 0) -> Usage | None:
    """Anthropic's usage as the canonical one; cached prompt tokens are prompt tokens too."""
    if not isinstance(raw, dict):
        return None
    prompt = sum(
        int(raw.get(key) or 0)
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage.of(prompt or input_tokens, int(raw.get("output_tokens") or 0))


class EventReader:
    """Anthropic's stream events of one answer, as canonical deltas.

    Tool calls come out as OpenAI's streamed ``tool_calls`` (an ``index`` per call, then
    argument fragments), so every frontend renders them as it renders any expert's.
    """

    def __init__(self) -> None:
        self.model: str | None = None
        self._input_tokens = 0
        self._calls: dict[int, int] = {}  # content block index -> tool call index
        self.done = False

    def read(self, data: dict[str, Any]) -> Delta | None:
        """The delta for one event's data, or ``None`` for events that carry nothing to pass on
        (``ping``, block stops); raises ``KeyError``/``TypeError`` on a malformed event."""
        kind = data["type"]
        if kind == "content_block_delta":
            delta = data["delta"]
            step = delta["type"]
            if step == "text_delta":
                return Delta(content=delta["text"], model=self.model)
            if step == "input_json_delta":
                call = {
                    "index": self._calls[data["index"]],
                    "function": {"arguments": delta["partial_json"]},
                }
                return Delta(tool_calls=[call], model=self.model)
            if step == "thinking_delta":
                return Delta(reasoning_content=delta["thinking"], model=self.model)
            return None
        if kind == "content_block_start":
            block = data["content_block"]
            if block["type"] == "text" and block.get("text"):
                return Delta(content=block["text"], model=self.model)
            if block["type"] == "tool_use":
                index = self._calls[data["index"]] = len(self._calls)
                call = {
                    "index": index,
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": ""},
                }
                return Delta(tool_calls=[call], model=self.model)
            return None
        if kind == "message_start":
            message = data["message"]
            self.model = message.get("model")
            self._input_tokens = (usage(message.get("usage")) or Usage()).prompt_tokens
            return None
        if kind == "message_delta":
            stop = data["delta"].get("stop_reason")
            return Delta(
                finish_reason=FINISH_REASONS.get(stop or "end_turn", "stop"),
                stop_sequence=data["delta"].get("stop_sequence"),
                usage=usage(data.get("usage"), self._input_tokens),
                model=self.model,
            )
        if kind == "message_stop":
            self.done = True
        return None
