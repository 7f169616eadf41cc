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

from moe_core import MOE_KEY, ExpertUnavailable, Frontend, ModelNotFound, MoEError
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.http import json_response, read_json_body
from moe_core.server import before_cut
from moe_openai_compat.embeddings import add_embeddings_routes
from moe_openai_compat.options import OpenAIFrontendOptions
from moe_openai_compat.responses import add_responses_routes
from moe_openai_compat.wire import ChunkWriter

log = structlog.get_logger(__name__)
# What /v1/models reports as ``created``: the experts exist since the gateway started.
_STARTED = int(time.time())


class OpenAIFrontend(Frontend):
    """OpenAI's chat-completions wire format, streaming included; embeddings and responses."""

    options: OpenAIFrontendOptions

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", chat_completions)
        app.router.add_post("/openai", chat_completions)
        app.router.add_post("/v1/route", route)
        app.router.add_get("/v1/models", list_models)
        app.router.add_get("/v1/models/{model}", get_model)
        add_embeddings_routes(app, self.options)
        add_responses_routes(app, self.options)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    moe = request.app[MOE_KEY]
    parsed = moe.parse(await read_json_body(request))
    if not parsed.stream:
        response = await moe.complete(parsed, request_id=request[REQUEST_ID_KEY])
        return json_response(response.chat_completion())
    return await _stream(request, parsed)


async def _stream(request: web.Request, parsed: Any) -> web.StreamResponse:
    moe = request.app[MOE_KEY]
    stream = await moe.open_stream(parsed, request_id=request[REQUEST_ID_KEY])
    first = await stream.first()
    deltas = aiter(stream)
    writer = ChunkWriter(stream.id, stream.created, stream.model)
    response = web.StreamResponse(headers=_EVENT_STREAM)
    await response.prepare(request)
    # Still streaming when the server's grace period ends: an error event before the cut, so
    # that the client's SDK raises a clear error instead of reading a truncated answer.
    done = before_cut(request, lambda: response.write(ChunkWriter.error(ShuttingDown())))
    try:
        # Each write is a system call and a packet the client wakes up for: what is ready
        # together goes together (the role with the first delta, the last frames with the end
        # of the body), and nothing ever waits for what is not.
        opening = writer.role()
        if first is not None:
            opening += writer.delta(first) or b""
        await response.write(opening)
        async for delta in deltas:
            frame = writer.delta(delta)
            if frame is not None:
                await response.write(frame)
        options = parsed.stream_options
        include_usage = options is not None and bool(options.include_usage)
        await response.write_eof(writer.end(stream.metadata, include_usage=include_usage))
    except MoEError as exc:
        log.warning("stream.failed_midway", error=exc.message, code=exc.code)
        await response.write(ChunkWriter.error(exc))
    except ConnectionResetError:
        log.info("stream.client_disconnected")
    finally:
        done()
        await stream.aclose()
    return response


# A streamed answer's headers: server-sent events that no proxy on the way may buffer.
_EVENT_STREAM = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class ShuttingDown(ExpertUnavailable):
    code = "server_shutting_down"

    def __init__(self) -> None:
        super().__init__("The server shut down before this answer was complete; retry")


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
