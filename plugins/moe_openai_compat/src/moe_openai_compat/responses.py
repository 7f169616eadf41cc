"""The OpenAI Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items``.

A response runs on the same pipeline as a chat completion: the body becomes the canonical chat
request (:mod:`.responses_input`), ``moe.complete`` or ``moe.open_stream`` answers it, and the
answer is rendered as a ``response`` object (:mod:`.responses_output`) or as its typed stream
events (:mod:`.responses_events`). As for chat streams, the first delta is read before any byte
is sent, so an error before the answer starts is a proper HTTP status the SDKs raise.

With ``store`` (true unless the caller says otherwise, as in OpenAI's API) the response and the
conversation that led to it are kept (:mod:`.responses_store`), so that a request naming it as
``previous_response_id`` continues that conversation, ``GET`` reads it back and
``input_items`` lists the input it answered, a page at a time as OpenAI pages lists.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog
from aiohttp import web

from moe_core import MOE_KEY, InvalidRequest, MoEError, MoEStream, NotFound, Usage
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.http import json_response, read_json_body
from moe_openai_compat.bodies import parse_body
from moe_openai_compat.options import OpenAIFrontendOptions
from moe_openai_compat.responses_events import ResponseEvents
from moe_openai_compat.responses_input import (
    Message,
    ResponsesRequest,
    chat_body,
    input_messages,
)
from moe_openai_compat.responses_output import (
    assistant_message,
    listed_items,
    new_id,
    output_items,
    response_object,
    status_of,
)
from moe_openai_compat.responses_store import Store, open_store

log = structlog.get_logger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class ResponsesAPI:
    """The routes of the Responses API, over one store of responses."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, request: web.Request) -> web.StreamResponse:
        moe = request.app[MOE_KEY]
        body = parse_body(ResponsesRequest, await read_json_body(request))
        history: list[Message] = []
        if body.previous_response_id is not None:
            stored = await self.store.get(body.previous_response_id)
            if stored is None:
                raise NotFound(
                    f"Previous response with id '{body.previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = stored["messages"]
        conversation = history + input_messages(body.input, required=not history)
        chat = moe.parse(chat_body(body, conversation))
        response_id, created_at = new_id("resp"), int(time.time())
        if body.stream:
            stream = await moe.open_stream(chat, request_id=request[REQUEST_ID_KEY])
            return await self._stream(request, stream, body, conversation, response_id, created_at)
        answer = await moe.complete(chat, request_id=request[REQUEST_ID_KEY])
        result = answer.result
        status, incomplete = status_of(result.finish_reason)
        response = response_object(
            body,
            response_id=response_id,
            created_at=created_at,
            model=answer.model,
            status=status,
            output=output_items(result),
            usage=result.usage,
            incomplete_details=incomplete,
            metadata=answer.metadata,
        )
        if result.images:
            response["images"] = [image.model_dump(exclude_none=True) for image in result.images]
        if result.audio:
            response["audio"] = [audio.model_dump(exclude_none=True) for audio in result.audio]
        await self._remember(body, response, conversation)
        return json_response(response)

    async def _stream(
        self,
        request: web.Request,
        stream: MoEStream,
        body: ResponsesRequest,
        conversation: list[Message],
        response_id: str,
        created_at: int,
    ) -> web.StreamResponse:
        first = await stream.first()
        deltas = aiter(stream)

        def snapshot(status: str, **fields: Any) -> dict[str, Any]:
            return response_object(
                body,
                response_id=response_id,
                created_at=created_at,
                model=stream.model,
                status=status,
                output=[],
                **fields,
            )

        events = ResponseEvents(snapshot("in_progress"))
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        finish_reason: str | None = None
        usage: Usage | None = None
        try:
            await response.write(events.start())
            delta = first
            while delta is not None:
                frames = events.delta(delta)
                if frames:
                    await response.write(frames)
                finish_reason = delta.finish_reason or finish_reason
                usage = delta.usage or usage
                delta = await anext(deltas, None)
            status, incomplete = status_of(finish_reason)
            final = snapshot(
                status, usage=usage, incomplete_details=incomplete, metadata=stream.metadata
            )
            await response.write(events.finish(final))
            await self._remember(body, final, conversation)
        except MoEError as exc:
            log.warning("responses.stream_failed_midway", error=exc.message, code=exc.code)
            error = {"code": exc.code or "server_error", "message": exc.message}
            failed = snapshot("failed", usage=usage, error=error)
            await response.write(events.fail(exc, failed))
            await self._remember(body, failed, conversation)
        except ConnectionResetError:
            log.info("responses.client_disconnected")
        finally:
            await stream.aclose()
        return response

    async def _remember(
        self, body: ResponsesRequest, response: dict[str, Any], conversation: list[Message]
    ) -> None:
        """Store the response and its conversation, the answer's turn included."""
        if not body.store:
            return
        reply = assistant_message(response["output"])
        messages = [*conversation, reply] if reply is not None else conversation
        record = {"response": response, "messages": messages, "input": listed_items(body.input)}
        await self.store.put(response["id"], record)

    async def retrieve(self, request: web.Request) -> web.Response:
        response_id = request.match_info["response_id"]
        stored = await self.store.get(response_id)
        if stored is None:
            raise NotFound(f"Response with id '{response_id}' not found.")
        return json_response(stored["response"])

    async def input_items(self, request: web.Request) -> web.Response:
        """One page of a stored response's input items: ``order`` (``desc``, the newest first,
        unless ``asc``), ``limit`` (1 to 100, 20 by default) and ``after`` (an item id)."""
        response_id = request.match_info["response_id"]
        stored = await self.store.get(response_id)
        if stored is None:
            raise NotFound(f"Response with id '{response_id}' not found.")
        items: list[dict[str, Any]] = stored.get("input", [])
        order, limit, after = _page_query(request.query)
        if order == "desc":
            items = items[::-1]
        start = 0
        if after is not None:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise InvalidRequest(
                    f"No input item with id '{after}' in response '{response_id}'.", param="after"
                )
            start = ids.index(after) + 1
        page = items[start : start + limit]
        return json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": start + limit < len(items),
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        response_id = request.match_info["response_id"]
        if not await self.store.delete(response_id):
            raise NotFound(f"Response with id '{response_id}' not found.")
        return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


def add_responses_routes(app: web.Application, options: OpenAIFrontendOptions) -> None:
    """Mount the Responses API, with the store ``options`` name, open while the app runs."""
    store = open_store(options)
    api = ResponsesAPI(store)

    async def opened(app: web.Application) -> AsyncIterator[None]:
        await store.start()
        yield
        await store.close()

    app.cleanup_ctx.append(opened)
    app.router.add_post("/v1/responses", api.create)
    app.router.add_get("/v1/responses/{response_id}", api.retrieve)
    app.router.add_delete("/v1/responses/{response_id}", api.delete)
    app.router.add_get("/v1/responses/{response_id}/input_items", api.input_items)


def _page_query(query: Mapping[str, str]) -> tuple[str, int, str | None]:
    """``order``, ``limit`` and ``after`` of a list request, each checked as OpenAI does."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    raw = query.get("limit", "20")
    if not (raw.isdecimal() and len(raw) <= 3 and 1 <= int(raw) <= 100):
        raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit")
    return order, int(raw), query.get("after")
