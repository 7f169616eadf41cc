"""Small helpers every frontend needs: reading a JSON body safely, answering JSON and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from moe_core.appkeys import BODY_LIMIT_KEY, BODY_TIMEOUT_KEY
from moe_core.errors import (
    CLIENT_CLOSED,
    InvalidRequest,
    MoEError,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

JSON_TYPES = frozenset({"application/json"})
Headers = Mapping[str, str]
UPSTREAM_HEADERS: ContextVar[Headers | None] = ContextVar("upstream_headers", default=None)
"""Headers every upstream call made for the request being handled carries (a tracing
plugin's W3C ``traceparent``); experts that call HTTP backends send them."""


async def read_json_body(request: web.Request) -> bytes:
    """The raw body of a JSON request, after checking its type and size.

    Parsing is left to the caller (pydantic parses bytes directly, which is faster than
    ``json.loads`` followed by validation). Empty bodies and wrong content types are 4xx here.
    """
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.content_type or 'none'!r}"
        )
    limit = request.app[BODY_LIMIT_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(request.content_length, limit)
    seconds = request.app[BODY_TIMEOUT_KEY]
    try:
        if request.content.is_eof():  # all of it arrived with the headers: nothing to time
            body = await request.read()
        else:
            async with asyncio.timeout(seconds):
                body = await request.read()
    except TimeoutError:
        # A client that sends its body slowly must not hold a connection (and memory) for long.
        raise RequestTimeout(
            f"The request body did not arrive within {seconds:g} s", headers={"Connection": "close"}
        ) from None
    except web.RequestPayloadError as exc:
        # aiohttp parses no further request on this connection, so tell the client to open another.
        encoding = request.headers.get("Content-Encoding")
        raise InvalidRequest(
            f"The request body could not be decoded with its Content-Encoding ({encoding})",
            code="invalid_encoding",
            headers={"Connection": "close"},
        ) from exc
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object", code="invalid_json")
    return body


def body_too_large(size: int | None, limit: int) -> PayloadTooLarge:
    got = f"{size} bytes" if size is not None else "more"
    return PayloadTooLarge(f"The request body is too large: {got}, the limit is {limit} bytes")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as JSON; pydantic models inside it are rendered as their JSON form."""
    return web.Response(
        body=json_bytes(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_bytes(data: Any, *, indent: bool = False) -> bytes:
    """``data`` as JSON; pydantic models inside it are rendered as their JSON form."""
    return orjson.dumps(data, default=_model_json, option=orjson.OPT_INDENT_2 if indent else None)


def _model_json(value: Any) -> Any:
    """What orjson cannot render itself: pydantic models, in their JSON form."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def error_response(error: MoEError) -> web.Response:
    return json_response(error.envelope(), status=error.status, headers=error.headers or None)


def status_of(error: BaseException) -> int:
    """The HTTP status of a request that ended with ``error``: a gateway error's or an aiohttp
    ``HTTPException``'s own, 499 for a client that went away (a cancelled handler), else 500
    (what the core's error middleware answers for anything else)."""
    if isinstance(error, (MoEError, web.HTTPException)):
        return error.status
    if isinstance(error, asyncio.CancelledError):
        return CLIENT_CLOSED
    return 500


class RequestObserver:
    """Sees every HTTP request the gateway answers, from its outermost layer: for metrics,
    traces and audit logs.

    Cheaper than a middleware, which adds a layer every request passes through on its way in
    and out, and it sees what a plugin's middleware cannot: requests the core's key check
    refuses, and every error envelope. Register one with ``add_request_observer`` in
    :func:`moe_core.hookspecs.moe_setup_app`.

    Each method runs in the request's own task, so a context variable set in
    :meth:`request_started` is seen by the handler, the pipeline's trackers and
    :meth:`request_ended`. They run on every request: keep them quick. One that raises is
    logged with its traceback and never fails the request. The defaults do nothing.
    """

    def request_started(self, request: web.Request) -> None:
        """Before the request reaches any middleware (its request id is already assigned)."""

    def request_ended(
        self,
        request: web.Request,
        status: int,
        response: web.StreamResponse | None,
        error: BaseException | None,
    ) -> None:
        """Once the handler is done.

        :param status: the status the client is answered with, or would have been (499 for a
            client that went away: :func:`status_of`).
        :param response: what the client is answered with: the handler's response, or the
            error envelope made from ``error``. An answer in one piece is not sent yet, so a
            header added here still reaches the client; a stream (``response.prepared``) is
            complete. ``None`` when the request was cut (the client went away, the server shut
            down).
        :param error: what the handler raised, or ``None``.
        """

    def response_starting(self, request: web.Request, response: web.StreamResponse) -> None:
        """As the response's headers are about to go out (they can still be changed): inside
        the handler for a stream, after :meth:`request_ended` for an answer in one piece."""
