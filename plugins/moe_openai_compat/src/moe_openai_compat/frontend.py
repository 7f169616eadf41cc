"""The ``openai`` frontend: ``/v1/chat/completions`` (``/openai``), ``/v1/models``, ``/v1/route``.

Streaming reads the first delta before sending any byte, so an error that happens before the
answer starts (unknown model, expert down and no fallback left) is still a proper HTTP error
status that SDKs turn into their exception classes. After the first byte, an error is sent as an
``error`` event, which the OpenAI SDKs also raise.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiohttp import web

from moe_core import MOE_KEY, Frontend, ModelNotFound, MoEError, Usage
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.http import json_response, read_json_body
from moe_openai_compat.wire import ChunkWriter, completion

log = structlog.get_logger(__name__)
# What /v1/models reports as ``created``: the experts exist since the gateway started.
_STARTED = int(time.time())


class OpenAIFrontend(Frontend):
    """OpenAI's chat-completions wire format, streaming included."""

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", chat_completions)
        app.router.add_post("/openai", chat_completions)
        app.router.add_post("/v1/route", route)
        app.router.add_get("/v1/models", list_models)
        app.router.add_get("/v1/models/{model}", get_model)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    moe = request.app[MOE_KEY]
    parsed = moe.parse(await read_json_body(request))
    if not parsed.stream:
        response = await moe.complete(parsed, request_id=request[REQUEST_ID_KEY])
        return json_response(completion(response))
    return await _stream(request, parsed)


async def _stream(request: web.Request, parsed: Any) -> web.StreamResponse:
    moe = request.app[MOE_KEY]
    stream = await moe.open_stream(parsed, request_id=request[REQUEST_ID_KEY])
    deltas = aiter(stream)
    try:
        first = await anext(deltas, None)
    except BaseException:
        await stream.aclose()
        raise
    writer = ChunkWriter(stream.id, stream.created, stream.model)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    finish_reason = "stop"
    usage: Usage | None = None
    modalities = {"text": False, "images": 0, "audio": 0}
    try:
        await response.write(writer.role())
        delta = first
        while delta is not None:
            frame = writer.delta(delta)
            if frame is not None:
                await response.write(frame)
            finish_reason = delta.finish_reason or finish_reason
            usage = delta.usage or usage
            modalities["text"] = modalities["text"] or bool(delta.content)
            modalities["images"] += len(delta.images or ())
            modalities["audio"] += len(delta.audio or ())
            delta = await anext(deltas, None)
        await response.write(writer.finish(finish_reason, stream.metadata, modalities))
        options = parsed.stream_options
        if options is not None and options.include_usage:
            await response.write(writer.usage(usage or Usage()))
        await response.write(ChunkWriter.DONE)
    except MoEError as exc:
        log.warning("stream.failed_midway", error=exc.message, code=exc.code)
        await response.write(ChunkWriter.error(exc))
    except ConnectionResetError:
        log.info("stream.client_disconnected")
    finally:
        await stream.aclose()
    return response


async def route(request: web.Request) -> web.Response:
    moe = request.app[MOE_KEY]
    parsed = moe.parse(await read_json_body(request))
    decision = await moe.route(parsed)
    return json_response(
        {
            "object": "moe.routing_decision",
            "model": parsed.model,
            **decision.model_dump(mode="json"),
        }
    )


def _model_entry(moe: Any, model_id: str) -> dict[str, Any]:
    owner = moe.experts[model_id].card.provider if model_id in moe.experts else "moe"
    return {"id": model_id, "object": "model", "created": _STARTED, "owned_by": owner}


async def list_models(request: web.Request) -> web.Response:
    moe = request.app[MOE_KEY]
    return json_response(
        {"object": "list", "data": [_model_entry(moe, model_id) for model_id in moe.model_ids()]}
    )


async def get_model(request: web.Request) -> web.Response:
    moe = request.app[MOE_KEY]
    model_id = request.match_info["model"]
    if model_id not in moe.model_ids():
        raise ModelNotFound(f"The model {model_id!r} does not exist", param="model")
    return json_response(_model_entry(moe, model_id))
