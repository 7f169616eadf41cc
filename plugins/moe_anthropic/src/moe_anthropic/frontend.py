"""The ``anthropic`` frontend: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

A request is validated as Anthropic validates it, converted to the canonical request and routed
like any other, so an Anthropic client can use every expert (``model`` is an expert's name,
``auto`` or a gate alias). Streaming reads the first delta before sending a byte, so an error
before the answer starts is still an HTTP status the SDKs turn into their exception classes;
after that, an error ends the stream with Anthropic's ``error`` event.
"""

from __future__ import annotations

from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from moe_anthropic.canonical import to_canonical
from moe_anthropic.errors import error_body
from moe_anthropic.render import EventWriter, message
from moe_anthropic.schema import CountTokensRequest, MessagesRequest
from moe_core import MOE_KEY, ChatRequest, Frontend, InvalidRequest, MoEError, Usage
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.http import json_response, read_json_body
from moe_core.run import CHARS_PER_TOKEN
from moe_core.server import render_errors

log = structlog.get_logger(__name__)

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
M = TypeVar("M", bound=BaseModel)


class AnthropicFrontend(Frontend):
    """Anthropic's Messages API, streaming, tools and token counting included."""

    def setup(self, app: web.Application) -> None:
        app.router.add_post(MESSAGES, create_message)
        app.router.add_post(COUNT_TOKENS, count_tokens)
        render_errors(app, MESSAGES, render_error)


async def create_message(request: web.Request) -> web.StreamResponse:
    moe = request.app[MOE_KEY]
    body = _validate(MessagesRequest, await read_json_body(request))
    canonical = moe.parse(to_canonical(body))
    request_id = request[REQUEST_ID_KEY]
    thinking = body.thinking is not None and body.thinking.type != "disabled"
    if not body.stream:
        response = await moe.complete(canonical, request_id=request_id)
        answer = message(response, _message_id(request_id), thinking=thinking)
        return json_response(answer, headers={"request-id": request_id})
    return await _stream(request, canonical, thinking=thinking)


async def _stream(
    request: web.Request, canonical: ChatRequest, *, thinking: bool
) -> web.StreamResponse:
    request_id = request[REQUEST_ID_KEY]
    stream = await request.app[MOE_KEY].open_stream(canonical, request_id=request_id)
    first = await stream.first()
    deltas = aiter(stream)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "request-id": request_id,
        }
    )
    await response.prepare(request)
    writer = EventWriter(_message_id(request_id), stream.model, thinking=thinking)
    finish_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    modalities = {"text": False, "images": 0, "audio": 0}
    try:
        await response.write(writer.start())
        delta = first
        while delta is not None:
            frames = writer.delta(delta)
            if frames:
                await response.write(frames)
            finish_reason = delta.finish_reason or finish_reason
            stop_sequence = delta.stop_sequence or stop_sequence
            usage = delta.usage or usage
            modalities["text"] = modalities["text"] or bool(delta.content)
            modalities["images"] += len(delta.images or ())
            modalities["audio"] += len(delta.audio or ())
            delta = await anext(deltas, None)
        await response.write(
            writer.finish(finish_reason, stop_sequence, usage, stream.metadata, modalities)
        )
    except MoEError as exc:
        log.warning("stream.failed_midway", error=exc.message, code=exc.code)
        await response.write(EventWriter.error(exc, request_id))
    except ConnectionResetError:
        log.info("stream.client_disconnected")
    finally:
        await stream.aclose()
    return response


async def count_tokens(request: web.Request) -> web.Response:
    """``{"input_tokens": n}`` for the expert the request would go to: its own count where it
    has a tokenizer at hand, else the gateway's estimate of four characters a token (said in
    ``moe_counted_by``)."""
    moe = request.app[MOE_KEY]
    body = _validate(CountTokensRequest, await read_json_body(request))
    canonical = moe.parse(to_canonical(body))
    decision = await moe.route(canonical)
    expert = moe.experts[decision.experts[0]].expert
    counted = expert.count_tokens(canonical)
    method = "tokenizer"
    if counted is None:
        method = "estimate"
        chars = sum(len(item.text()) for item in canonical.messages)
        chars += sum(len(str(tool)) for tool in (canonical.upstream_extras().get("tools") or ()))
        counted = max(1, round(chars / CHARS_PER_TOKEN))
    return json_response(
        {"input_tokens": counted, "moe_expert": expert.name, "moe_counted_by": method},
        headers={"request-id": request[REQUEST_ID_KEY]},
    )


def _message_id(request_id: str) -> str:
    return f"msg_{request_id}"


def _validate(model: type[M], raw: bytes) -> M:
    """The body as ``model``, or a 400 naming the first problem's path as Anthropic does
    (``messages.0.content: Field required``)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        if error["type"] == "json_invalid":
            raise InvalidRequest(f"The request body is not valid JSON: {error['msg']}") from None
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "model_type" and not where:
            raise InvalidRequest("The request body must be a JSON object") from None
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "Extra inputs are not permitted (this gateway does not support it)"
        raise InvalidRequest(f"{where}: {message}", param=where) from None


def render_error(request: web.Request, error: MoEError) -> web.Response:
    """An error on the Messages routes in Anthropic's shape, whichever layer raised it (the key
    check, a rate limit, a 405 from the router, the handler itself)."""
    request_id = request.get(REQUEST_ID_KEY)
    return _error(error.status, error_body(error, request_id), request_id, error.headers)


def _error(
    status: int, body: dict[str, Any], request_id: str | None, headers: dict[str, str] | None
) -> web.Response:
    extra = {"request-id": request_id} if request_id else {}
    return json_response(body, status=status, headers={**(headers or {}), **extra})
