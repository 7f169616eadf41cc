"""The Anthropic Messages API request, validated as Anthropic validates it.

Unknown top-level parameters are refused (as Anthropic refuses them), so a client never
believes a feature it asked for was honoured when the gateway cannot honour it (server tools,
documents, containers). Inside content blocks, unknown keys are ignored: clients send back the
blocks they received, with fields such as ``citations`` or ``cache_control`` that change
nothing here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moe_core import RoutingHints


class Block(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextBlock(Block):
    type: Literal["text"]
    text: str


class Base64Source(Block):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLSource(Block):
    type: Literal["url"]
    url: str


class ImageBlock(Block):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ToolUseBlock(Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] = ""
    is_error: bool = False


class ThinkingBlock(Block):
    """Thinking a client sends back; no expert reads another's thinking, so it is dropped."""

    type: Literal["thinking", "redacted_thinking"]


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class MessageParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class CustomTool(BaseModel):
    """A client tool; Anthropic's server tools (web search, code execution) carry a ``type``
    naming them and are refused here, because no expert behind the gateway runs them."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None


class OutputFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: OutputFormat | None = None
    effort: str | None = Field(None, description="Accepted and not passed on: no canonical form.")


class ThinkingConfig(BaseModel):
    """Accepted so that clients which always send it work; the answer carries an expert's
    reasoning as thinking blocks whenever thinking is not disabled."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = None


class MessagesRequest(BaseModel):
    """A ``POST /v1/messages`` body, plus the gateway's optional ``moe`` routing hints."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=2**31 - 1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = Field(None, max_length=4)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    tools: list[CustomTool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None
    thinking: ThinkingConfig | None = None
    # Scheduling hints of Anthropic's own service: meaningless to other experts, harmless here.
    service_tier: Literal["auto", "standard_only"] | None = None
    speed: Literal["standard", "fast"] | None = None
    cache_control: dict[str, Any] | None = None
    moe: RoutingHints | None = None


class CountTokensRequest(MessagesRequest):
    """A ``POST /v1/messages/count_tokens`` body: a message request without its limit."""

    max_tokens: int = Field(1, ge=1, le=2**31 - 1)
