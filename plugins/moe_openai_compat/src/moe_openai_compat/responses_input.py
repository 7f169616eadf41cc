"""The Responses API's request body, and the chat request it becomes.

``POST /v1/responses`` runs on the same pipeline as chat completions, so its body is turned into
the canonical chat request: ``instructions`` become the first system message; ``input`` (a string,
or items) become messages, a ``function_call`` item an assistant message's ``tool_calls`` and a
``function_call_output`` item a ``tool`` message; function ``tools`` and ``tool_choice`` take chat's
shape, ``text.format`` becomes ``response_format`` and ``max_output_tokens`` the token limit.
Everything a chat expert could not honour (tools OpenAI runs itself, background runs, stored
prompts) is a 400 naming the parameter, never silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moe_core import InvalidRequest, RoutingHints

TokenCount = Annotated[int, Field(ge=1, le=2**31 - 1)]
Message = dict[str, Any]
ROLES = ("user", "assistant", "system", "developer")


class TextFormat(BaseModel):
    """``text.format``: plain text, any JSON object, or JSON following a schema."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(BaseModel):
    """OpenAI's ``/v1/responses`` body, plus ``moe`` routing hints; unknown keys are a 400."""

    model_config = ConfigDict(extra="forbid")

    model: str = "auto"
    # A string or a list of items; checked by input_messages, whose messages name the item.
    input: Any = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: TokenCount | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)
    user: str | None = None
    safety_identifier: str | None = None
    reasoning: dict[str, Any] | None = None
    # Accepted and without effect here: the gateway keeps no prompt cache and never truncates.
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    background: bool | None = None
    moe: RoutingHints | None = None


def _refuse(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _text_of_part(part: Any, at: str) -> str | None:
    """A text part's text (``input_text``, ``output_text``, ``refusal``), else ``None``."""
    if not isinstance(part, dict):
        raise _refuse(f"'{at}' must be an object", at)
    kind = part.get("type")
    field = {"input_text": "text", "output_text": "text", "refusal": "refusal"}.get(kind)
    if field is None:
        return None
    text = part.get(field)
    if not isinstance(text, str):
        raise _refuse(f"'{at}.{field}' must be a string", f"{at}.{field}")
    return text


def _chat_part(part: dict[str, Any], at: str) -> dict[str, Any]:
    """A non-text content part in chat's shape."""
    kind = part.get("type")
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _refuse(
                f"'{at}.image_url' must be a URL or a data URL (file ids are not supported)",
                f"{at}.image_url",
            )
        image = {"url": url}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        keys = ("file_data", "file_id", "filename")
        return {"type": "file", "file": {key: part[key] for key in keys if part.get(key)}}
    raise _refuse(
        f"'{at}.type' {kind!r} is not a content type the gateway takes; use input_text, "
        "input_image or input_file",
        f"{at}.type",
    )


def _content(value: Any, at: str) -> str | list[dict[str, Any]]:
    """A message's content: text stays a string; parts with images or files become chat parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _refuse(f"'{at}' must be a string or an array of content parts", at)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(value):
        where = f"{at}[{index}]"
        text = _text_of_part(part, where)
        parts.append(
            {"type": "text", "text": text} if text is not None else _chat_part(part, where)
        )
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _string(item: dict[str, Any], key: str, at: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _refuse(f"'{at}.{key}' must be a string", f"{at}.{key}")
    return value


def _function_call(messages: list[Message], item: dict[str, Any], at: str) -> None:
    """A call the model made, as an assistant message's tool call: the one right before it when
    that is an assistant message (content and calls of one turn), else a new one."""
    call = {
        "id": _string(item, "call_id", at),
        "type": "function",
        "function": {
            "name": _string(item, "name", at),
            "arguments": _string(item, "arguments", at),
        },
    }
    if messages and messages[-1]["role"] == "assistant":
        messages[-1].setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _function_output(item: dict[str, Any], at: str) -> Message:
    output = item.get("output")
    if isinstance(output, list):
        texts = [_text_of_part(part, f"{at}.output[{i}]") for i, part in enumerate(output)]
        if any(text is None for text in texts):
            raise _refuse(f"'{at}.output' may hold text parts only", f"{at}.output")
        output = "".join(texts)  # type: ignore[arg-type] - None ruled out above
    if not isinstance(output, str):
        raise _refuse(f"'{at}.output' must be a string", f"{at}.output")
    return {"role": "tool", "tool_call_id": _string(item, "call_id", at), "content": output}


def input_messages(value: Any, *, required: bool) -> list[Message]:
    """The chat messages of ``input``: a string is one user message; items become messages in
    order. Reasoning items are left out: chat experts take no reasoning back."""
    if value is None or value == []:
        if required:
            raise InvalidRequest("Missing required parameter: 'input'.", param="input")
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _refuse("'input' must be a string or an array of input items", "input")
    messages: list[Message] = []
    for index, item in enumerate(value):
        at = f"input[{index}]"
        if not isinstance(item, dict):
            raise _refuse(f"'{at}' must be an object", at)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise _refuse(f"'{at}.role' must be one of {', '.join(ROLES)}", f"{at}.role")
            messages.append(
                {"role": role, "content": _content(item.get("content"), f"{at}.content")}
            )
        elif kind == "function_call":
            _function_call(messages, item, at)
        elif kind == "function_call_output":
            messages.append(_function_output(item, at))
        elif kind != "reasoning":
            raise _refuse(
                f"'{at}.type' {kind!r} is not supported; use message, function_call or "
                "function_call_output items",
                f"{at}.type",
            )
    return messages


def _chat_tool(tool: dict[str, Any], at: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise _refuse(
            f"'{at}.type' {tool.get('type')!r} is not supported: only function tools are, "
            "since the gateway's experts cannot run OpenAI's own tools",
            f"{at}.type",
        )
    function = {"name": _string(tool, "name", at)}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _tool_choice(value: Any) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": _string(value, "name", "tool_choice")}}
    raise _refuse(
        '\'tool_choice\' must be auto, none, required or {"type": "function", "name": ...}',
        "tool_choice",
    )


def _response_format(text_format: TextFormat) -> dict[str, Any] | None:
    if text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return {"type": "json_object"}
    if text_format.name is None or text_format.json_schema is None:
        raise _refuse("a json_schema format needs 'name' and 'schema'", "text.format")
    schema: dict[str, Any] = {"name": text_format.name, "schema": text_format.json_schema}
    if text_format.description is not None:
        schema["description"] = text_format.description
    if text_format.strict is not None:
        schema["strict"] = text_format.strict
    return {"type": "json_schema", "json_schema": schema}


def chat_body(request: ResponsesRequest, conversation: list[Message]) -> dict[str, Any]:
    """The chat request for ``request``, whose messages are ``conversation`` after any
    ``instructions`` (which apply to this response only, as OpenAI's do)."""
    if request.background:
        raise _refuse("background responses are not supported", "background")
    messages = list(conversation)
    if request.instructions:
        messages.insert(0, {"role": "system", "content": request.instructions})
    chat: dict[str, Any] = {"model": request.model, "messages": messages, "stream": request.stream}
    if request.tools:
        chat["tools"] = [_chat_tool(tool, f"tools[{i}]") for i, tool in enumerate(request.tools)]
    if request.tool_choice is not None:
        chat["tool_choice"] = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is not None:
        chat["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text is not None and request.text.format is not None:
        response_format = _response_format(request.text.format)
        if response_format is not None:
            chat["response_format"] = response_format
    effort = (request.reasoning or {}).get("effort")
    if effort is not None:
        chat["reasoning_effort"] = effort
    simple = {
        "max_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "user": request.user or request.safety_identifier,
    }
    chat.update({key: value for key, value in simple.items() if value is not None})
    if request.moe is not None:
        chat["moe"] = request.moe.model_dump(exclude_unset=True)
    return chat
