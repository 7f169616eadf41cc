"""The plugin contract: every hook a ``moe`` plugin may implement.

A plugin is a module (or object) with functions marked ``@moe_core.hookimpl`` whose names match
the specs below, made discoverable by an entry point in the ``moe`` group of its distribution::

    [project.entry-points.moe]
    my-plugin = "my_plugin.plugin"

All hooks are synchronous and called once, at startup, with keyword arguments. Plugins register
**kinds**: a name, a factory and a pydantic options model. The YAML configuration then names
*instances* of kinds (``experts: {fast: {kind: my-kind, ...options}}``) and the gateway builds
each one by calling ``factory(name=..., options=...)`` with the validated options. Work that must
await (loading a model, opening an HTTP session) belongs in the built object's ``start()``, never
in a hook: pluggy cannot await.

Registering a kind name that another plugin already registered is a startup error naming both
plugins, and so is a misspelt hook name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from moe_core.plugins import Register

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
def moe_register_frontends(register: Register) -> None:
    """Register frontend kinds: sets of HTTP routes that speak one wire format.

    ``factory(name=..., options=...)`` must return a :class:`moe_core.Frontend` whose
    ``setup(app)`` adds aiohttp routes; handlers reach the pipeline through
    ``request.app[moe_core.MOE_KEY]``. Every registered frontend is mounted unless the config
    sets ``server.frontends.<name>.enabled: false``.

    :param register: the registration callback.

    Called once at startup, while the aiohttp application is assembled.
    """
