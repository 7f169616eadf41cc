"""The HTTP side of a trace: a server span per request, continuing the caller's W3C trace.

The span is made current for the handler, so the request's ``chat`` span (opened by the
tracker when the pipeline starts) becomes its child, and a caller that sent ``traceparent``
sees the gateway's work inside its own trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from moe_core.http import status_of
from moe_core.server import Handler
from moe_otel import semconv
from moe_otel.tracker import OTelTracker

Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def server_span_middleware(tracker: OTelTracker) -> Middleware:
    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        tracer = tracker.tracer
        if tracer is None:
            return await handler(request)
        resource = request.match_info.route.resource
        route = None if resource is None else resource.canonical
        attributes = {semconv.HTTP_METHOD: request.method, semconv.URL_PATH: request.path}
        if route is not None:
            attributes[semconv.HTTP_ROUTE] = route
        parent = propagate.extract(request.headers)
        span = tracer.start_span(
            f"{request.method} {route}" if route else request.method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except BaseException as exc:
            status = status_of(exc)
            raise
        finally:
            span.set_attribute(semconv.HTTP_STATUS, status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute(semconv.ERROR_TYPE, str(status))
            span.end()
            context.detach(token)

    return traced
