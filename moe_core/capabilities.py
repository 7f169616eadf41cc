"""What a request needs from an expert beyond text, and whether an expert's card offers it.

Tools, a required tool choice, images, audio, JSON output, logprobs and sampling penalties are
silently ignored by an expert that cannot honour them: prose instead of a tool call, an invented
image description. So a gate only ever sees the experts that can honour the request, a request
that names one that cannot is a 400 naming the parameter, and a configuration may instead drop
what the expert cannot do (``server.drop_unsupported_params``), saying so in the notes.
"""

from __future__ import annotations

from collections.abc import Mapping

from moe_core.errors import InvalidRequest
from moe_core.models import ChatMessage, ChatRequest, ContentPart, ExpertCard, RoutingDecision

# The need, then the request fields that express it (a top-level parameter or the message part).
_FIELDS = {
    "tools": ("tools", "tool_choice"),
    "json": ("response_format",),
    "logprobs": ("logprobs", "top_logprobs"),
    "penalties": ("frequency_penalty", "presence_penalty"),
    "audio_out": ("modalities", "audio"),
    "choices": ("n",),
}


def needs(request: ChatRequest) -> dict[str, str]:
    """Each capability the request needs, with the parameter that asks for it."""
    extras = request.__pydantic_extra__ or {}
    found: dict[str, str] = {}
    if extras.get("tools"):
        found["tools"] = "tools"
    response_format = extras.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") != "text":
        found["json"] = "response_format"
    if extras.get("logprobs") or extras.get("top_logprobs"):
        found["logprobs"] = "logprobs"
    for penalty in ("frequency_penalty", "presence_penalty"):
        if getattr(request, penalty):
            found.setdefault("penalties", penalty)
    if "audio" in (extras.get("modalities") or ()):
        found["audio_out"] = "modalities"
    if (request.n or 1) > 1:
        found["choices"] = "n"
    for message in request.messages:
        if not isinstance(message.content, list):
            continue
        for part in message.content:
            if part.type == "image_url":
                found.setdefault("vision", "messages")
            elif part.type == "input_audio":
                found.setdefault("audio_in", "messages")
    return found


def supports(card: ExpertCard, need: str) -> bool:
    """Whether an expert's card says it honours ``need`` (its flags, or ``capabilities``)."""
    if need in card.capabilities:
        return True
    if need == "tools":
        return card.supports_tools
    if need == "json":
        return card.supports_json
    if need == "vision":
        return card.supports_vision or "image" in card.modalities_in
    if need == "audio_in":
        return "audio" in card.modalities_in
    if need == "audio_out":
        return "audio" in card.modalities_out
    return False


def missing(card: ExpertCard, wanted: Mapping[str, str]) -> dict[str, str]:
    """The needs of ``wanted`` this card does not offer."""
    return {need: param for need, param in wanted.items() if not supports(card, need)}


def unsupported(expert: str, lacking: Mapping[str, str]) -> InvalidRequest:
    need, param = next(iter(lacking.items()))
    return InvalidRequest(
        f"expert {expert!r} does not support {param!r} (it lacks the {need!r} capability); "
        "choose an expert that does, use model 'auto', or set "
        "server.drop_unsupported_params to drop it",
        param=param,
        code="unsupported_parameter",
    )


def without(request: ChatRequest, lacking: Mapping[str, str]) -> tuple[ChatRequest, list[str]]:
    """The request without the parameters ``lacking`` names, and what was dropped; image and
    audio parts become a text placeholder."""
    dropped: list[str] = []
    extras = dict(request.__pydantic_extra__ or {})
    update: dict[str, object] = {}
    for need in lacking:
        for field in _FIELDS.get(need, ()):
            if field in extras:
                del extras[field]
                dropped.append(field)
            elif getattr(request, field, None) is not None:
                update[field] = None
                dropped.append(field)
    kinds = {"vision": "image_url", "audio_in": "input_audio"}
    gone = {kinds[need] for need in lacking if need in kinds}
    if gone:
        update["messages"] = [_without_parts(message, gone) for message in request.messages]
        dropped.extend(sorted(gone))
    copy = request.model_copy(update=update)
    copy.__pydantic_extra__ = extras
    return copy, dropped


def _without_parts(message: ChatMessage, kinds: set[str]) -> ChatMessage:
    if not isinstance(message.content, list) or all(p.type not in kinds for p in message.content):
        return message
    parts = [
        ContentPart(type="text", text=f"[{part.type} omitted]") if part.type in kinds else part
        for part in message.content
    ]
    return message.model_copy(update={"content": parts})


def steer(
    decision: RoutingDecision,
    capable: Mapping[str, ExpertCard],
    skipped: list[str],
    wanted: Mapping[str, str],
) -> None:
    """Keep only capable experts in a decision (a gate may pick from its own configuration
    rather than the cards it was given), and say which were skipped and why."""
    chosen = [name for name in decision.experts if name in capable]
    if not chosen:
        # The best capable expert by its card's quality, ties to the configured order.
        chosen = [max(capable, key=lambda name: capable[name].quality or 0.0)]
    decision.experts = chosen
    decision.fallbacks = [name for name in decision.fallbacks if name in capable]
    asked = ", ".join(sorted(set(wanted.values())))
    decision.rationale += f"; skipped {', '.join(skipped)}: they cannot honour {asked}"
