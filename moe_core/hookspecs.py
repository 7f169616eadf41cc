"""The plugin contract: every hook a ``moe`` plugin may implement.

A plugin is a module (or object) with functions marked ``@moe_core.hookimpl`` whose names match
the specs below, made discoverable by an entry point in the ``moe`` group of its distribution::

    [project.entry-points.moe]
    my-plugin = "my_plugin.plugin"

All hooks are synchronous and called at startup, with keyword arguments. Plugins register
**kinds**: a name, a factory and a pydantic options model. The YAML configuration then names
*instances* of kinds (``experts: {fast: {kind: my-kind, ...options}}``) and the gateway builds
each one by calling ``factory(name=..., options=...)`` with the validated options. Work that must
await (loading a model, opening an HTTP session) belongs in the built object's ``start()``, never
in a hook: pluggy cannot await.

Registering a kind name that another plugin already registered is a startup error naming both
plugins, and so is a misspelt hook name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from aiohttp import web

    from moe_core.orchestrator import MoE
    from moe_core.plugins import AddMiddleware, AddRequestObserver, Register, RegisterSection

hookspec = pluggy.HookspecMarker("moe")


# --------------------------------------------------------------------------------------------
# Parts: what answers, what decides, what merges, what watches, what speaks a wire format
# --------------------------------------------------------------------------------------------


@hookspec
def moe_register_experts(register: Register) -> None:
    """Register expert kinds: things that answer a request.

    Call ``register(name, factory, options=OptionsModel)`` once per kind. ``factory(name=...,
    options=...)`` must return a :class:`moe_core.Expert`: ``generate(request)`` returns an
    :class:`moe_core.ExpertResult`, ``stream(request)`` yields :class:`moe_core.Delta`, ``card()``
    describes it (provider, modalities, cost, quality, context window).

    :param register: the registration callback; the plugin's name is recorded with each kind.

    Called once at startup, before the configuration's experts are built.
    """


@hookspec
def moe_register_gates(register: Register) -> None:
    """Register gate kinds: policies that decide which experts answer a request.

    ``factory(name=..., options=...)`` must return a :class:`moe_core.Gate` whose
    ``async route(request, experts, signals)`` returns a :class:`moe_core.RoutingDecision`.
    ``experts`` maps each available expert's name to its card; ``signals`` maps each configured
    tracker's name to the tracker, so a gate can read what trackers learned.

    :param register: the registration callback.

    Called once at startup.
    """


@hookspec
def moe_register_combiners(register: Register) -> None:
    """Register combiner kinds: strategies that run a decision and merge what experts return.

    ``factory(name=..., options=...)`` must return a :class:`moe_core.Combiner` with
    ``async complete(run)`` and ``stream(run)``. ``run`` (a :class:`moe_core.Run`) gives the
    request, the decision and ``call``/``stream`` methods that time every expert call, apply
    timeouts and report to trackers, so a combiner never does that bookkeeping itself.
    A decision selects a combiner by naming its kind in ``strategy``.

    :param register: the registration callback.

    Called once at startup.
    """


@hookspec
def moe_register_trackers(register: Register) -> None:
    """Register tracker kinds: observers that keep state gates can read.

    ``factory(name=..., options=...)`` must return a :class:`moe_core.Tracker` whose
    ``async observe(event)`` receives every :mod:`moe_core.events` event (request started, route
    decided, expert called, request finished). A tracker that raises is logged, never allowed to
    fail the request.

    :param register: the registration callback.

    Called once at startup.
    """


@hookspec
def moe_register_scorers(register: Register) -> None:
    """Register scorer kinds: judges of an answer, which strategies such as ``cascade`` consult.

    ``factory(name=..., options=...)`` must return a :class:`moe_core.Scorer` whose
    ``async score(run, answer)`` returns a :class:`moe_core.Verdict`: how much it doubts that
    ``answer`` is good enough (0 keep it, 1 surely wrong) and why, in words that end up in
    ``moe_metadata``. A scorer may call experts through ``run`` (a judge does) or use a model of
    its own (a predictor trained on recorded outcomes). A combiner names one with
    ``scorer: <kind>`` and ``scorer_options: {...}``.

    :param register: the registration callback.

    Called once at startup.
    """


@hookspec
def moe_register_preparers(register: Register) -> None:
    """Register preparer kinds: steps that rewrite a request just before one expert gets it.

    ``factory(name=..., options=...)`` must return a :class:`moe_core.Preparer` whose
    ``async prepare(run, expert, request)`` returns the request that expert should see: images
    described for a text-only expert, fetched pages or search results added as context. The
    configuration's ``preparers`` map names instances, which run in order on every expert call.

    :param register: the registration callback.

    Called once at startup.
    """


@hookspec
def moe_register_frontends(register: Register) -> None:
    """Register frontend kinds: sets of HTTP routes that speak one wire format.

    ``factory(name=..., options=...)`` must return a :class:`moe_core.Frontend` whose
    ``setup(app)`` adds aiohttp routes; handlers reach the pipeline through
    ``request.app[moe_core.MOE_KEY]``. Every registered frontend is mounted unless the config
    sets ``server.frontends.<name>.enabled: false``.

    :param register: the registration callback.

    Called once at startup, while the aiohttp application is assembled.
    """


# --------------------------------------------------------------------------------------------
# Configuration: sections a plugin owns, rewriting before validation, the default to serve
# --------------------------------------------------------------------------------------------


@hookspec
def moe_config_sections(register: RegisterSection) -> None:
    """Declare the top-level configuration sections this plugin owns.

    Call ``register(name, Model)`` once per section, with a pydantic model (give it
    ``extra="forbid"``, or subclass :class:`moe_core.Options`, so typos are errors). The core
    validates the section against it and reports problems with the exact key path
    (``tracking.store: Input should be 'memory', 'sqlite' or 'redis'``). Parts read the validated
    section with ``moe.config.section(name)`` (in :meth:`moe_core.Part.attach`); a section the file
    leaves out is the model's defaults. A top-level key no installed plugin declares is an error
    naming it.

    :param register: the registration callback; a name registered twice, or one the core owns
        (``server``, ``experts``, ``gate``, ``combiner``, ``trackers``, ``plugins``), is a
        startup error naming both plugins.

    Called once per plugin manager, when a configuration is first validated.
    """


@hookspec
def moe_prepare_config(data: dict[str, Any], base_dir: Path, source: str) -> None:
    """Rewrite the raw configuration in place, before it is validated.

    For sections that stand for other entries: a model registry that becomes one expert per
    model, say. Only change what your own section describes.

    :param data: the parsed YAML (or dict) the user gave; change it in place.
    :param base_dir: the configuration file's folder, for relative paths it names.
    :param source: where the configuration came from, for error messages.

    Called once per configuration load, before any validation.
    """


@hookspec
def moe_default_config() -> dict[str, Any] | None:
    """A fragment of the configuration ``moe serve`` runs when given none.

    Return a dict shaped like a configuration file (``{"experts": {...}, "gate": {...}}``) or
    ``None``. The fragments of every installed plugin are merged: mappings merge key by key,
    and two plugins setting the same key to different values is a startup error naming both.
    With no fragment naming experts, ``moe serve`` says what to install or configure.

    Called when no ``--config`` and no ``$MOE_CONFIG`` is given.
    """


# --------------------------------------------------------------------------------------------
# The HTTP application and the command line
# --------------------------------------------------------------------------------------------


@hookspec
def moe_setup_app(
    app: web.Application,
    moe: MoE,
    add_middleware: AddMiddleware,
    add_request_observer: AddRequestObserver,
) -> None:
    """Add middlewares, request observers, routes and startup/cleanup contexts to the gateway's
    aiohttp application. An implementation takes only the arguments it uses.

    ``add_middleware(middleware, stage=...)`` places an aiohttp middleware in one of three
    stages, run in this order for each request: ``"auth"`` (who the caller is), ``"limits"``
    (whether the caller may go on: rate limits, quotas), ``"routes"`` (anything else that wraps
    the handlers). Within a stage, middlewares run in the order plugins added them. Outside all
    of them the core assigns the request id, logs the request and turns every error into the
    wire format's envelope, so a middleware raises :class:`moe_core.MoEError` to refuse.

    ``add_request_observer(observer)`` adds a :class:`moe_core.RequestObserver`, told when each
    request starts, when its response's first byte is about to go out, and when it ends, with
    the final response or error. It sits outside every middleware, so it sees every request,
    refused ones included, and costs a request less than a middleware does: the way to measure
    or trace requests, rather than to change them.

    Resources with a lifetime go in ``app.cleanup_ctx`` (aiohttp's own API); ``moe`` is the
    gateway the application serves.

    Called once per application, before the frontends' routes are added (a route added here
    takes precedence over a frontend's catch-all).
    """


@hookspec
def moe_register_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``moe`` subcommands.

    ``commands`` is the ``argparse`` subparsers object of the ``moe`` command: call
    ``commands.add_parser(name, help=...)``, add its arguments, and set
    ``parser.set_defaults(handler=function)``, where ``function(args)`` returns the exit code.
    Raise :class:`moe_core.ConfigError` or :class:`moe_core.MoEError` for a readable one-line
    error. Keep imports of heavy libraries inside the handler: every ``moe`` invocation calls
    this hook.

    Called once, when the command line is parsed.
    """
