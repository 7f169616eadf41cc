"""The HTTP side of a trace: a server span per request, continuing the caller's W3C trace.

The span is made current for the handler, so the request's ``chat`` span (opened by the
tracker when the pipeline starts) becomes its child, and a caller that sent ``traceparent``
sees the gateway's work inside its own trace. It is opened by a request observer, which the
core calls outside every middleware: a request refused by a key check or a rate limit has its
span too.
"""

from __future__ import annotations

from aiohttp import web
from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from moe_core import RequestObserver
from moe_otel import semconv
from moe_otel.tracker import OTelTracker

SERVER_SPAN: web.RequestKey[tuple[Span, object]] = web.RequestKey("moe_otel_server_span")
"""The request's server span, and the token that makes its context current."""


class ServerSpans(RequestObserver):
    """Opens a server span as each request starts, and ends it with the request's status."""

    def __init__(self, tracker: OTelTracker) -> None:
        self.tracker = tracker

    def request_started(self, request: web.Request) -> None:
        tracer = self.tracker.tracer
        if tracer is None:
            return
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
        request[SERVER_SPAN] = span, context.attach(trace.set_span_in_context(span, parent))

    def request_ended(
        self,
        request: web.Request,
        status: int,
        response: web.StreamResponse | None,
        error: BaseException | None,
    ) -> None:
        opened = request.get(SERVER_SPAN)
        if opened is None:
            return
        span, token = opened
        span.set_attribute(semconv.HTTP_STATUS, status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute(semconv.ERROR_TYPE, str(status))
        span.end()
        context.detach(token)  # type: ignore[arg-type]
