"""The canonical shapes every part agrees on: request, expert card, routing decision, results.

The request is OpenAI's chat-completion body plus optional routing hints under ``moe``, because
that is the wire format most clients already speak; every other frontend converts into it, and
nothing downstream knows which frontend a request came from. Unknown OpenAI parameters are kept
(``extra="allow"``) so that an OpenAI-compatible expert can pass them upstream untouched.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(BaseModel):
    """One part of a multimodal message (``text``, ``image_url``, ``input_audio``, ``file``)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    image_url: dict[str, Any] | None = None
    input_audio: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts_or_none(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:  # as OpenAI refuses it
            raise ValueError("an empty array; send a string or at least one content part")
        return value

    def text(self) -> str:
        """The message's text, with the text parts of a multimodal message joined by newlines."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content if part.type == "text")


class RoutingHints(BaseModel):
    """What a caller may tell the gate beyond the messages (all optional)."""

    model_config = ConfigDict(extra="forbid")

    force_expert: str | None = Field(None, description="Skip the gate and use this expert.")
    strategy: str | None = Field(None, description="Ask for a combiner kind by name.")
    task_type: str | None = None
    budget_usd: float | None = Field(None, ge=0)
    quality_requirement: float | None = Field(None, ge=0, le=1)
    latency_requirement_ms: float | None = Field(None, gt=0)
    cache: bool | None = Field(
        None, description="False: never from or into a cache; true: even a sampled request."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


_NO_HINTS = RoutingHints()
# Bounds on the request's integers: a seed is a signed 64-bit integer, as OpenAI's; token counts
# fit the 32-bit integers inference servers keep them in. Larger values no upstream can take.
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
TokenCount = Annotated[int, Field(ge=1, le=2**31 - 1)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """An OpenAI ``/v1/chat/completions`` body, plus ``moe`` routing hints."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = "auto"
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=128, description="How many choices to generate.")
    seed: Seed | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None
    moe: RoutingHints | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @property
    def hints(self) -> RoutingHints:
        return self.moe or _NO_HINTS

    @property
    def output_limit(self) -> int | None:
        """The token limit the caller asked for, whichever of the two OpenAI names it used."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""

    def upstream_extras(self) -> dict[str, Any]:
        """OpenAI parameters this model does not name, to be passed upstream as they came."""
        return dict(self.__pydantic_extra__ or {})


class ExpertCard(BaseModel):
    """What an expert is and costs; gates read it, config may override any field."""

    model_config = ConfigDict(extra="forbid")

    provider: str = "local"
    description: str = ""
    modalities_in: list[str] = Field(default_factory=lambda: ["text"])
    modalities_out: list[str] = Field(default_factory=lambda: ["text"])
    capabilities: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    cost_per_1k_input: float = Field(0.0, ge=0)
    cost_per_1k_output: float = Field(0.0, ge=0)
    quality: float | None = Field(None, ge=0, le=1)
    latency_p50_ms: float | None = Field(None, ge=0)
    latency_p95_ms: float | None = Field(None, ge=0)
    context_window: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)
    supports_streaming: bool = True
    # What a model registry knows about a model beyond the above (see moe_router.registry); gates
    # that filter by capability read them, others may ignore them.
    supports_tools: bool = False
    supports_vision: bool = False
    supports_json: bool = False
    supports_system_prompt: bool = True
    enabled: bool = Field(True, description="False: gates never pick it (it still answers by name)")
    tags: list[str] = Field(default_factory=list)
    task_preferences: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="Task type to preference 0..1 (1: preferred for it)."
    )
    rate_limit_rpm: int | None = Field(None, ge=1)
    rate_limit_tpm: int | None = Field(None, ge=1)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage.of(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class ImageOutput(BaseModel):
    """A generated image, base64-encoded, carried beside the text of an answer."""

    data: str = Field(description="The image bytes, base64-encoded.")
    description: str = ""
    format: str = Field("image/jpeg", description="The image's MIME type.")
    model: str | None = None


class AudioOutput(BaseModel):
    """Generated speech, base64-encoded, carried beside the text of an answer."""

    data: str = Field(description="The audio bytes, base64-encoded.")
    format: str = Field("audio/mpeg", description="The audio's MIME type.")
    voice: str | None = None
    transcript: str | None = None


class ExpertResult(BaseModel):
    """A complete answer from one expert (or the merged answer of a combiner). What a backend
    answers beyond these fields (logprobs, a refusal, more choices) may ride along as extra
    members, for a frontend of the same wire format to pass on."""

    model_config = ConfigDict(extra="allow")

    content: str
    finish_reason: str = "stop"
    stop_sequence: str | None = Field(
        None, description="The stop sequence that ended the answer, when the expert says which."
    )
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: Usage | None = None
    model: str | None = Field(None, description="The model that really answered, if known.")
    images: list[ImageOutput] = Field(default_factory=list)
    audio: list[AudioOutput] = Field(default_factory=list)

    def modalities(self) -> dict[str, Any]:
        """What the answer carries: ``{"text": bool, "images": n, "audio": n}``."""
        return {"text": bool(self.content), "images": len(self.images), "audio": len(self.audio)}


class Delta(BaseModel):
    """One streamed increment of an answer; extra members as :class:`ExpertResult`'s."""

    model_config = ConfigDict(extra="allow")

    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    model: str | None = None
    images: list[ImageOutput] | None = None
    audio: list[AudioOutput] | None = None

    @classmethod
    def whole(cls, result: ExpertResult) -> Delta:
        """A complete answer as a single delta, for parts that cannot stream."""
        return cls(
            content=result.content,
            reasoning_content=result.reasoning_content,
            tool_calls=result.tool_calls,
            finish_reason=result.finish_reason,
            stop_sequence=result.stop_sequence,
            usage=result.usage,
            model=result.model,
            images=result.images or None,
            audio=result.audio or None,
        )


class RoutingDecision(BaseModel):
    """A gate's answer: who should answer, how, and why."""

    experts: list[str] = Field(min_length=1, description="Chosen experts, best first.")
    strategy: str | None = Field(None, description="Combiner kind; None means the configured one.")
    fallbacks: list[str] = Field(default_factory=list)
    gate: str = ""
    confidence: float | None = Field(None, ge=0, le=1)
    rationale: str = ""
    runner_up: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    evidence: list[Any] = Field(default_factory=list)
    judge: str | None = Field(
        None, description="For strategies that need one (judge): the expert that picks the answer."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Sampling parameters the gate tuned for this request."
    )


class FallbackRecord(BaseModel):
    expert: str
    error: str


class MoEMetadata(BaseModel):
    """What the gateway adds to every answer so callers can see how it was produced."""

    request_id: str | None = None
    gate: str
    strategy: str
    experts_used: list[str]
    rationale: str
    confidence: float | None = None
    runner_up: str | None = None
    latency_ms: dict[str, float] = Field(default_factory=dict)
    total_latency_ms: float = 0.0
    fallbacks: list[FallbackRecord] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list, description="What the combiner decided and why (votes, picks)."
    )
    sources: list[dict[str, Any]] = Field(
        default_factory=list,
        description="What experts were given to read: {id, title, url, by} per page, result, file.",
    )
    cost_usd: float | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)


class MoEResponse(BaseModel):
    """The merged answer and how it was produced; frontends render it into their wire format."""

    id: str
    created: int
    model: str
    result: ExpertResult
    metadata: MoEMetadata

    def chat_completion(self) -> dict[str, Any]:
        """This answer as OpenAI's ``chat.completion``, the wire format the canonical request
        comes from. What a backend returned beyond the canonical fields (logprobs, a refusal,
        more choices, ``system_fingerprint``) goes back where OpenAI puts it, and a message that
        is only tool calls (or a refusal) has ``content: null``, as OpenAI's has."""
        result = self.result
        extra = result.model_extra or {}
        message: dict[str, Any] = {"role": "assistant", "content": result.content}
        if result.reasoning_content:
            message["reasoning_content"] = result.reasoning_content
        if result.tool_calls:
            message["tool_calls"] = result.tool_calls
        if extra:
            message.update(extra.get("message") or {})
        if not result.content and (result.tool_calls or message.get("refusal")):
            message["content"] = None
        choices = [
            {
                "index": 0,
                "message": message,
                "finish_reason": result.finish_reason,
                "logprobs": extra.get("logprobs"),
            },
            *(extra.get("choices") or ()),
        ]
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": (result.usage or Usage()).model_dump(),
            "system_fingerprint": extra.get("system_fingerprint"),
            # The metadata's fields as they are (plain values, rendered by orjson several times
            # faster than pydantic would); json_response renders the few models inside them.
            "moe_metadata": {**self.metadata.__dict__, "modalities": result.modalities()},
        }
        if "service_tier" in extra:
            body["service_tier"] = extra["service_tier"]
        # Generated media travel beside the chat completion, as the Pollinations seed's clients
        # read them; OpenAI SDKs keep unknown top-level keys (``completion.model_extra``).
        if result.images:
            body["images"] = [image.model_dump(exclude_none=True) for image in result.images]
        if result.audio:
            body["audio"] = [audio.model_dump(exclude_none=True) for audio in result.audio]
        return body
