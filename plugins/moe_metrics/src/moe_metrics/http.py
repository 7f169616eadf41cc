"""What only HTTP sees: routes, statuses, the whole request's time, time to first token, the
gateway's own overhead (``x-moe-overhead-ms`` on every response), and the scrape itself.

**Overhead** is the gateway's time before the response's first byte minus the time it spent
waiting on experts. For an answer in one piece that is the whole handler time less every expert
call; a streamed answer's headers go out once its first chunk is there, while its expert call
is still running: that call counts as expert time from the moment routing ended (or the
previous call ended), so the header says what routing, trackers and fallbacks cost before the
first chunk. Time is measured from the gateway's outermost layer, where the core calls request
observers, so a request its key check refuses is counted too.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from moe_core import AddRequestObserver, MoEError, RequestObserver
from moe_core.server import Handler, require_admin
from moe_metrics.instruments import method_label
from moe_metrics.tracker import SCOPE, MetricsTracker, RequestScope

OVERHEAD_HEADER = "x-moe-overhead-ms"


def mount(app: web.Application, tracker: MetricsTracker, observe: AddRequestObserver) -> None:
    """Serve the scrape, and measure every request."""
    observe(Measurements(tracker))
    app.router.add_get(tracker.settings.path, scrape_handler(tracker))


def route_label(request: web.Request) -> str:
    """The matched route's template (``/v1/models/{model}``): bounded, unlike the path."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


class Measurements(RequestObserver):
    """Times each request, counts it when it ends, and adds its overhead header as its first
    byte is about to go out.

    The request's scope travels in :data:`SCOPE` alone: the core calls an observer in the
    request's own task, where the pipeline's events reach the tracker too."""

    def __init__(self, tracker: MetricsTracker) -> None:
        self.recorder = tracker.recorder
        self._labels: dict[tuple[object, str], tuple[str, str]] = {}

    def request_started(self, request: web.Request) -> None:
        scope = RequestScope()
        scope.started = time.perf_counter()
        SCOPE.set(scope)

    def request_ended(
        self,
        request: web.Request,
        status: int,
        response: web.StreamResponse | None,
        error: BaseException | None,
    ) -> None:
        scope = SCOPE.get()
        if scope is None:
            return
        if response is not None and not response.prepared:  # in one piece: nothing else
            _overhead(scope, response)  # happens before its first byte, so this is its overhead
        route, method = self._route_and_method(request)
        if isinstance(error, MoEError) and error.code == "rate_limit_exceeded":
            self.recorder.rate_limited(route)
        first = scope.first_byte_at
        self.recorder.request(
            route,
            method,
            scope.model,
            scope.expert,
            str(status),
            time.perf_counter() - scope.started,
            scope.overhead,
            None if first is None else first - scope.started,
        )

    def response_starting(self, request: web.Request, response: web.StreamResponse) -> None:
        scope = SCOPE.get()
        if scope is not None and scope.overhead is None:  # a stream: its handler prepared it
            _overhead(scope, response)

    def _route_and_method(self, request: web.Request) -> tuple[str, str]:
        route = request.match_info.route
        found = self._labels.get((route, request.method))
        if found is None:
            found = (route_label(request), method_label(request.method))
            if route.resource is not None:  # a miss makes a new route object every time
                self._labels[route, request.method] = found
        return found


def _overhead(scope: RequestScope, response: web.StreamResponse) -> None:
    """The gateway's own time so far, into the scope and the response's header."""
    now = time.perf_counter()
    seconds = now - scope.started
    if scope.routed_at is not None:
        seconds = max(0.0, seconds - scope.expert_seconds(now))
        if not scope.finished:
            scope.first_byte_at = now  # a stream: its first chunk is what goes out now
    scope.overhead = seconds
    response.headers[OVERHEAD_HEADER] = f"{seconds * 1000:.3f}"


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
