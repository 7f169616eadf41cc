"""The aiohttp application: every registered frontend, behind a few small middlewares.

Middlewares, outermost first: request id + access log + error envelope + request observers,
then the ``auth`` stage (the core's bearer keys first), the ``limits`` stage and the ``routes``
stage, where plugins add theirs (:func:`moe_core.hookspecs.moe_setup_app`). Every
error a client can see, aiohttp's own 404/405/413 included, is OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}``, or the error shape of the frontend that
serves the path (:func:`render_errors`); an unexpected exception is logged with its traceback
and answered with a plain 500 envelope, never the traceback itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from moe_core.appkeys import (
    ADMIN_KEYS_KEY,
    API_KEYS_KEY,
    BODY_LIMIT_KEY,
    BODY_TIMEOUT_KEY,
    CUT_WARNINGS_KEY,
    ERROR_RENDERERS_KEY,
    MOE_KEY,
    PUBLIC_PATHS_KEY,
    REQUEST_ID_KEY,
    START_ERROR_KEY,
    ErrorRenderer,
)
from moe_core.config import FrontendSettings, InstanceConfig
from moe_core.errors import (
    AuthenticationFailed,
    ConfigError,
    MethodNotAllowed,
    MoEError,
    NotFound,
    PermissionDenied,
)
from moe_core.events import elapsed_ms
from moe_core.http import (
    RequestObserver,
    body_too_large,
    error_response,
    status_of,
)
from moe_core.orchestrator import MoE, build_part, new_request_id
from moe_core.parts import Frontend
from moe_core.plugins import MIDDLEWARE_STAGES, MiddlewareStage
from moe_core.reload import reload, spawn

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ResponseSignal = Callable[[web.Request, web.StreamResponse], Awaitable[None]]
REQUEST_ID_HEADER = "X-Request-Id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Paths that must answer without a key: load balancers probe them.
PUBLIC_PATHS = frozenset({"/health", "/health/live"})


def create_app(moe: MoE, *, wait_for_experts: bool = False) -> web.Application:
    """Assemble the gateway's HTTP application.

    :param wait_for_experts: load every expert before accepting requests (tests); by default
        the server answers at once and experts that are still loading say so with a 503.
    """
    server = moe.config.server
    api_keys = frozenset(key.encode() for key in server.api_keys())  # compared as bytes
    stages: dict[MiddlewareStage, list[Any]] = {stage: [] for stage in MIDDLEWARE_STAGES}
    if api_keys:
        stages["auth"].append(_auth_middleware)

    def add_middleware(middleware: Any, *, stage: MiddlewareStage = "routes") -> None:
        if stage not in stages:
            raise ConfigError(f"unknown middleware stage {stage!r}; stages: {MIDDLEWARE_STAGES}")
        stages[stage].append(middleware)

    app = web.Application(client_max_size=server.max_body_bytes)
    app[MOE_KEY] = moe
    app[API_KEYS_KEY] = api_keys
    app[ADMIN_KEYS_KEY] = frozenset(key.encode() for key in server.admin_keys())
    app[BODY_LIMIT_KEY] = server.max_body_bytes
    app[BODY_TIMEOUT_KEY] = server.body_timeout_s
    app[START_ERROR_KEY] = []
    app[PUBLIC_PATHS_KEY] = set(PUBLIC_PATHS)
    app[CUT_WARNINGS_KEY] = set()
    app[ERROR_RENDERERS_KEY] = []
    app.on_shutdown.append(_warn_before_cut)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # The port is bound while the gate and experts load, so that health checks see
        # `loading` (and requests a 503 with Retry-After) instead of a closed port.
        starting = asyncio.create_task(moe.start(wait=wait_for_experts))
        if wait_for_experts:
            await starting
        else:
            starting.add_done_callback(functools.partial(_stop_if_failed, app))
        yield
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await moe.aclose()

    app.cleanup_ctx.append(lifecycle)
    observers: list[RequestObserver] = []
    moe.plugins.setup_app(app, moe, add_middleware, observers.append)
    app.on_response_prepare.append(_response_starting(tuple(observers)))
    app.middlewares.append(_request_middleware(server.access_log, tuple(observers)))
    for stage in MIDDLEWARE_STAGES:
        app.middlewares.extend(stages[stage])
    # Frontends come last: a middleware a frontend adds (a catch-all route) runs inside auth.
    for frontend in build_frontends(moe):
        frontend.setup(app)
    return app


def before_cut(request: web.Request, warn: Callable[[], Awaitable[object]]) -> Callable[[], None]:
    """Have ``warn`` run if the server shuts down while this request is still being answered,
    half a second before the grace period ends and the request is cut (a stream writes its
    ``error`` event). Call the function it returns once the answer is complete."""
    warnings = request.app[CUT_WARNINGS_KEY]
    warnings.add(warn)
    return lambda: warnings.discard(warn)


async def _warn_before_cut(app: web.Application) -> None:
    async def later() -> None:
        await asyncio.sleep(max(0.0, app[MOE_KEY].config.server.shutdown_timeout_s - 0.5))
        for warn in list(app[CUT_WARNINGS_KEY]):
            with contextlib.suppress(Exception):
                await warn()

    spawn(later())


def _stop_if_failed(app: web.Application, starting: asyncio.Task[None]) -> None:
    """A gateway that cannot start stops, and :func:`serve` raises why (the CLI prints it)."""
    if starting.cancelled() or starting.exception() is None:
        return
    app[START_ERROR_KEY].append(starting.exception())
    log.error("server.start_failed", error=str(starting.exception()))
    signal.raise_signal(signal.SIGINT)  # run_app's own handler: a graceful shutdown


def build_frontends(moe: MoE) -> list[Frontend]:
    """One instance of every registered frontend kind the config enables (by default, those
    whose :attr:`~moe_core.Frontend.mounted_by_default` is true)."""
    settings = moe.config.server.frontends
    unknown = set(settings) - set(moe.plugins.kinds.names("frontend"))
    if unknown:
        raise ConfigError(
            f"server.frontends: unknown frontend(s) {', '.join(sorted(unknown))}; installed: "
            f"{', '.join(moe.plugins.kinds.names('frontend'))}"
        )
    frontends = []
    for kind in moe.plugins.kinds.of_part("frontend"):
        setting = settings.get(kind.name, FrontendSettings())
        if setting.enabled is False:
            continue
        instance = InstanceConfig(kind=kind.name, **setting.options())
        path = f"server.frontends.{kind.name}"
        frontend = build_part(moe.plugins, moe.config, "frontend", instance, kind.name, path)
        if setting.enabled or frontend.mounted_by_default:
            frontends.append(frontend)
    return frontends


def _request_middleware(access_log: bool, observers: tuple[RequestObserver, ...]):
    """The outermost layer: a request id bound into every log line, errors of every kind turned
    into the wire format's envelope, the access log and the request observers. One middleware rather
    than several, because each layer costs every request."""

    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER)
        rid = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else new_request_id()
        request[REQUEST_ID_KEY] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        for observer in observers:
            try:
                observer.request_started(request)
            except Exception:
                _observer_failed(observer, "request_started")
        status = 500
        response: web.StreamResponse | None = None
        error: BaseException | None = None
        try:
            try:
                response = await handler(request)
            except Exception as exc:
                error = exc
                response = _envelope(request, exc)
            status = response.status
            return response
        except BaseException as exc:  # cancelled, or a redirect
            error = exc
            status = status_of(exc)
            raise
        finally:
            if access_log:
                log.info(
                    "http.request",
                    method=request.method,
                    path=request.path,
                    status=status,
                    ms=elapsed_ms(started),
                )
            for observer in observers:
                try:
                    observer.request_ended(request, status, response, error)
                except Exception:
                    _observer_failed(observer, "request_ended")
            structlog.contextvars.unbind_contextvars("request_id")

    return request_id


def _response_starting(observers: tuple[RequestObserver, ...]) -> ResponseSignal:
    """The ``on_response_prepare`` signal: the request id header, then the observers."""

    async def starting(request: web.Request, response: web.StreamResponse) -> None:
        rid = request.get(REQUEST_ID_KEY)
        if rid is None:  # refused before the middleware (aiohttp's own 400 for a bad request)
            return
        response.headers[REQUEST_ID_HEADER] = rid
        for observer in observers:
            try:
                observer.response_starting(request, response)
            except Exception:
                _observer_failed(observer, "response_starting")

    return starting


def _observer_failed(observer: RequestObserver, method: str) -> None:
    """A request observer that fails is logged, and never fails the request it observes."""
    log.exception("http.observer_failed", observer=type(observer).__qualname__, method=method)


def _envelope(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The error envelope for what a handler raised, in the wire format of the frontend that
    serves the path (:func:`render_errors`), else OpenAI's; a redirect is raised again, as it
    is no error."""
    if isinstance(exc, MoEError):
        error = exc
    elif isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        error = _from_http_exception(request, exc)
    else:
        log.exception("http.unhandled_error", method=request.method, path=request.path)
        error = MoEError(
            "The server had an error while processing your request. "
            f"Request id: {request.get(REQUEST_ID_KEY)}",
            code="internal_error",
        )
    path = request.path
    for prefix, render in request.app[ERROR_RENDERERS_KEY]:
        if path == prefix or path.startswith(prefix + "/"):
            return render(request, error)
    return error_response(error)


def render_errors(app: web.Application, path: str, render: ErrorRenderer) -> None:
    """Have the errors of requests to ``path``, and to the paths below it, answered by
    ``render`` instead of in OpenAI's envelope: for a frontend whose wire format has an error
    shape of its own (call it from :meth:`moe_core.Frontend.setup`).

    ``render`` gets every error such a request ends with, whichever layer raised it: the key
    check, a rate limit, the router's 404 or 405, a body too large, the handler, or an
    unexpected exception (a 500 ``internal_error``, logged with its traceback first)."""
    app[ERROR_RENDERERS_KEY].append((path.rstrip("/"), render))


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> MoEError:
    if exc.status == 404:
        return NotFound(f"Unknown request URL: {request.method} {request.path}.")
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return MethodNotAllowed(
            f"Method {request.method} is not allowed for {request.path}"
            + (f"; allowed: {allowed}" if allowed else ""),
            headers={"Allow": allowed} if allowed else None,
        )
    if exc.status == 413:
        return body_too_large(request.content_length, request.app[BODY_LIMIT_KEY])
    error = MoEError(exc.reason or "HTTP error")
    error.status = exc.status
    error.type = "invalid_request_error" if exc.status < 500 else "server_error"
    return error


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in request.app[PUBLIC_PATHS_KEY]:
        return await handler(request)
    if not _key_in(request, API_KEYS_KEY):
        raise AuthenticationFailed(
            "Incorrect API key provided."
            if bearer_key(request)
            else "Missing API key: send it as 'Authorization: Bearer <key>' (or 'x-api-key')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await handler(request)


def require_admin(request: web.Request) -> None:
    """Refuse an action that changes the gateway for everyone (a breaker reset, an A/B test, a
    reload) unless it comes with an admin key; a gateway with no keys at all is open to all.

    :raises PermissionDenied: a 403 naming ``server.admin_keys_env``.
    """
    if request.app[API_KEYS_KEY] and not _key_in(request, ADMIN_KEYS_KEY):
        raise PermissionDenied(
            f"{request.method} {request.path} needs an admin key (server.admin_keys_env)"
        )


def _key_in(request: web.Request, keys: web.AppKey[frozenset[bytes]]) -> bool:
    key = bearer_key(request)
    # Bytes, because compare_digest refuses non-ASCII str (header bytes that are not UTF-8 come
    # back from aiohttp's surrogateescape decoding as sent); the configured keys are encoded once.
    sent = None if key is None else key.encode("utf-8", "surrogateescape")
    return sent is not None and any(hmac.compare_digest(sent, ok) for ok in request.app[keys])


def bearer_key(request: web.Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or of ``x-api-key`` (as Anthropic's
    clients send it), if the request sends one."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    return key or request.headers.get("x-api-key", "").strip() or None


def serve(
    moe: MoE, *, host: str | None = None, port: int | None = None, reuse_port: bool = False
) -> None:
    """Run the gateway until interrupted; in-flight requests finish on shutdown.

    The port listens before the application is built: a health probe that connects early waits
    for its answer instead of being refused, and the gate and experts, which start loading in
    the background when the application starts, do so only once the port listens.

    :param reuse_port: bind with ``SO_REUSEPORT``, as each of ``--workers`` does.
    """
    settings = moe.config.server
    host, port = host or settings.host, port if port is not None else settings.port
    log.info("server.starting", url=f"http://{host}:{port}", config=moe.config.source)
    sockets = _listen(host, port, reuse_port=reuse_port)
    try:
        app = create_app(moe)
        app.on_startup.extend((tune_garbage_collector, _reload_on_sighup))
        web.run_app(
            app,
            sock=sockets,
            backlog=BACKLOG,
            shutdown_timeout=settings.shutdown_timeout_s,
            # A client that disconnects cancels its handler, and with it the work done for it (a
            # local model's generation stops at its next token), as aiohttp's test server does.
            handler_cancellation=True,
            access_log=None,
            print=None,
            loop=_new_event_loop(),
        )
    finally:
        for sock in sockets:
            sock.close()
    if app[START_ERROR_KEY]:
        raise app[START_ERROR_KEY][0]


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform but Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


BACKLOG = 128


def _listen(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening TCP sockets on every address ``host`` resolves to (all interfaces for ``""``),
    set up as asyncio's ``create_server`` sets up its own: ``SO_REUSEADDR``, IPv6 sockets
    IPv6-only, and ``SO_REUSEPORT`` when asked. Raises :class:`OSError` if one cannot bind."""
    addresses = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def _reload_on_sighup(app: web.Application) -> None:
    """``kill -HUP`` reloads the configuration, as ``POST /-/reload`` does."""

    async def hangup() -> None:
        try:
            await reload(app[MOE_KEY])
        except ConfigError as exc:
            log.error("config.reload_failed", error=str(exc))

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: spawn(hangup()))


GC_FIRST_GENERATION_THRESHOLD = 7000


async def tune_garbage_collector(app: web.Application | None = None) -> None:
    """Tune the cyclic garbage collector for serving (``moe serve`` only, at startup).

    This leans on the interpreter's collector settings, so it lives here alone and pays for
    itself: ``make bench-overhead --quick`` measured 161 against 187 µs of gateway CPU a request
    (0.38-0.51x against 0.35-0.42x the upstream's rps at 32 clients, two runs each). Everything
    built at startup (modules, plugins, parts) lives as long as the process: frozen, full
    collections stop walking it again. A request allocates a few hundred objects that reference
    counting frees on its own, so with 32 requests in flight the default first-generation
    threshold (700) ran a collection every couple of requests, each walking the in-flight
    requests' objects again; ten times the threshold makes that ten times rarer, for a few
    thousand more objects waiting for a collection.
    """
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, GC_FIRST_GENERATION_THRESHOLD), second, third)
