"""What only HTTP sees: routes, statuses, the whole request's time, time to first token, the
gateway's own overhead (``x-moe-overhead-ms`` on every response), and the scrape itself.

**Overhead** is the gateway's time before the response's first byte minus the time it spent
waiting on experts. For an answer in one piece that is the whole handler time less every expert
call; a streamed answer's headers go out once its first chunk is there, while its expert call
is still running: that call counts as expert time from the moment routing ended (or the
previous call ended), so the header says what routing, trackers and fallbacks cost before the
first chunk. Time is measured from this plugin's middleware, the first in the ``auth`` stage
after the core's own key check.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from moe_core import AddMiddleware, MoEError
from moe_core.http import status_of
from moe_core.server import Handler, require_admin
from moe_metrics.instruments import method_label
from moe_metrics.tracker import SCOPE, MetricsTracker, RequestScope

OVERHEAD_HEADER = "x-moe-overhead-ms"
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
PrepareSignal = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def mount(app: web.Application, tracker: MetricsTracker, add_middleware: AddMiddleware) -> None:
    """Serve the scrape, and measure every request."""
    middleware, add_overhead = measurements(tracker)
    add_middleware(middleware, stage="auth")
    app.on_response_prepare.append(add_overhead)
    app.router.add_get(tracker.settings.path, scrape_handler(tracker))


def route_label(request: web.Request) -> str:
    """The matched route's template (``/v1/models/{model}``): bounded, unlike the path."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


def measurements(tracker: MetricsTracker) -> tuple[Middleware, PrepareSignal]:
    """The middleware that times each request, and the signal that adds its overhead header.

    The request's scope travels in :data:`SCOPE` alone: aiohttp handles each request in a task
    of its own, so the signal (run in that task once the handler returned) still sees it, and
    no other request can (the scope names its request, which the signal checks)."""
    recorder = tracker.recorder
    labels: dict[tuple[object, str], tuple[str, str]] = {}

    def route_and_method(request: web.Request, scope: RequestScope) -> tuple[str, str]:
        found = scope.labels
        if found is None:
            route = request.match_info.route
            found = labels.get((route, request.method))
            if found is None:
                found = (route_label(request), method_label(request.method))
                if route.resource is not None:  # a miss makes a new route object every time
                    labels[route, request.method] = found
            scope.labels = found
        return found

    def overhead(scope: RequestScope, response: web.StreamResponse) -> float:
        now = time.perf_counter()
        seconds = now - scope.started
        if scope.routed_at is not None:
            seconds = max(0.0, seconds - scope.expert_seconds(now))
            if not scope.finished:
                scope.first_byte_at = now  # a stream: its first chunk is what goes out now
        scope.overhead = seconds
        response.headers[OVERHEAD_HEADER] = f"{seconds * 1000:.3f}"
        return seconds

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = RequestScope()
        scope.started = time.perf_counter()
        scope.request = request
        SCOPE.set(scope)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:  # an answer in one piece: nothing else happens before
                overhead(scope, response)  # its first byte, and the figure is counted below
            return response
        except BaseException as exc:
            status = status_of(exc)
            if isinstance(exc, MoEError) and exc.code == "rate_limit_exceeded":
                recorder.rate_limited(route_and_method(request, scope)[0])
            raise
        finally:
            scope.ended = True
            elapsed = time.perf_counter() - scope.started
            route, method = route_and_method(request, scope)
            first = scope.first_byte_at
            recorder.request(
                route,
                method,
                scope.model,
                scope.expert,
                str(status),
                elapsed,
                scope.overhead,
                None if first is None else first - scope.started,
            )

    async def add_overhead(request: web.Request, response: web.StreamResponse) -> None:
        """The header of a response the middleware did not see before its first byte: a stream
        (prepared by its handler) or an error envelope (made outside the middleware). An
        ``on_response_prepare`` signal, run as that byte is about to go out."""
        scope = SCOPE.get()
        if scope is None or scope.request is not request:
            return  # refused before this plugin's middleware (the core's key check)
        if scope.overhead is not None:
            return
        seconds = overhead(scope, response)
        if scope.ended:  # an error envelope: the request was counted already
            recorder.overhead(route_and_method(request, scope)[0], seconds)

    return measure, add_overhead


def scrape_handler(tracker: MetricsTracker) -> Handler:
    async def scrape(request: web.Request) -> web.Response:
        """The metrics in Prometheus's text format (or OpenMetrics, when the scraper asks)."""
        if tracker.settings.admin_only:
            require_admin(request)
        states = tracker.states
        if states is not None:
            await states.refresh()
        registry = tracker.registry
        if tracker.multiprocess_dir:
            # Every worker writes its figures to files there; the answer sums them all.
            registry = CollectorRegistry()
            MultiProcessCollector(registry, tracker.multiprocess_dir)
            if states is not None:
                registry.register(states)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    return scrape
