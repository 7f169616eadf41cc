"""The parts a plugin can provide, as small base classes.

Subclass the one you need and implement its abstract method; everything else has a sensible
default. Factories receive ``name`` (the instance name from config) and ``options`` (the kind's
validated options model), which the base classes keep as attributes.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from moe_core.errors import ConfigError, MoEError
from moe_core.events import ExpertCalled, RequestFinished, RequestStarted, RouteDecided
from moe_core.models import ChatRequest, Delta, ExpertCard, ExpertResult, RoutingDecision
from moe_core.options import CombinerOptions

if TYPE_CHECKING:
    from pathlib import Path

    from aiohttp import web

    from moe_core.events import Event
    from moe_core.orchestrator import MoE
    from moe_core.run import Run


class Part:
    """What every part has: a name, its options, and an optional async lifecycle."""

    def __init__(self, name: str, options: BaseModel) -> None:
        self.name = name
        self.options = options

    async def start(self) -> None:
        """Acquire resources (load a model, open a session). Runs once before the first call."""

    async def close(self) -> None:
        """Release what :meth:`start` acquired. Runs once at shutdown."""

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        """Raise :class:`moe_core.ConfigError` if the options name an expert not configured.

        Called once at startup with every configured expert, so a typo in a gate's or a
        combiner's expert list stops the gateway instead of failing the first request.
        """

    def attach(self, moe: MoE) -> None:
        """Called once with the assembled gateway, before :meth:`start`, for every part.

        A part reads its plugin's config section here (``moe.config.section(name)``), asks for
        what it shares with other parts (``moe.resource(key, factory)``: one tracking store for
        every tracker), or builds the parts it is made of (a cascade's scorer) through
        ``moe.plugins``, with the same checks as the configuration's own parts.
        """


class Expert(Part):
    """Something that answers a chat request."""

    def card(self) -> ExpertCard:
        """Describe this expert; config's ``card:`` overrides any field of it."""
        return ExpertCard()

    def count_tokens(self, request: ChatRequest) -> int | None:
        """The prompt's length in this expert's own tokens, chat template included, or ``None``
        when it has no tokenizer at hand (the default; a remote API, a model still loading).

        Gates that predict cost or check context windows use the count where an expert gives
        one and a characters-per-token estimate otherwise. Called on the event loop before the
        expert is chosen: it must be quick and must not wait on anything."""
        return None

    @abc.abstractmethod
    async def generate(self, request: ChatRequest) -> ExpertResult:
        """Answer the request in one piece."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Answer the request incrementally; the default yields the whole answer as one delta."""
        yield Delta.whole(await self.generate(request))


class Gate(Part):
    """A routing policy. One that learns from data also implements :class:`TrainableGate`."""

    runs_experiments: ClassVar[bool] = False
    """True for a gate that applies A/B tests itself (an :class:`ExperimentSignal`'s
    assignment); for every other gate the gateway applies them to its decisions."""

    @abc.abstractmethod
    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        """Decide which of ``experts`` answer ``request``, with a rationale.

        :param experts: available experts (name to card), in configuration order.
        :param signals: configured trackers by name, to read what they learned.
        """


@runtime_checkable
class TrainableGate(Protocol):
    """A gate that learns from data: ``moe gate train`` calls :meth:`train`."""

    def train(self, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
        """Fit, write the artefact (to ``output``, else a user path the gate picks, never the
        packaged one) and return the metrics, with a human-readable ``"report"``."""
        ...


class Combiner(Part):
    """A strategy that runs a decision: calls experts and merges their answers."""

    @abc.abstractmethod
    async def complete(self, run: Run) -> ExpertResult:
        """Run the decision and return one merged answer."""

    async def stream(self, run: Run) -> AsyncIterator[Delta]:
        """Run the decision and stream the answer; the default streams the merged answer whole."""
        yield Delta.whole(await self.complete(run))


class Tracker(Part):
    """An observer of every request's events, keeping state gates can read."""

    observes: ClassVar[tuple[type[Event], ...]] = (
        RequestStarted,
        RouteDecided,
        ExpertCalled,
        RequestFinished,
    )
    """The event types ``observe`` is given. A tracker that needs fewer says so: events no
    tracker wants are never delivered, which saves every request the calls."""

    @abc.abstractmethod
    async def observe(self, event: Event) -> None:
        """Record one event. Must be quick: it runs on the request path."""

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready summary of what this tracker knows (served at ``GET /-/stats``)."""
        return {}


class Verdict(NamedTuple):
    """A scorer's judgement of one answer."""

    doubt: float
    """How likely the answer is not good enough: 0 keep it, 1 surely wrong."""
    reason: str
    """Why, in a few words (it ends up in ``moe_metadata``)."""


class Scorer(Part):
    """A judge of answers: how much it doubts that an answer is good enough, and why."""

    @abc.abstractmethod
    async def score(self, run: Run, answer: ExpertResult) -> Verdict:
        """Judge ``answer`` to ``run.request``; may call experts through ``run``."""


class Preparer(Part):
    """A step between the combiner and an expert: the request that expert should see.

    Preparers run in configured order on every call; one that raises fails that call like the
    expert would (its fallbacks answer). Tell the caller what changed with ``run.note``.
    """

    provides: ClassVar[frozenset[str]] = frozenset()
    """Capabilities this step gives every expert (``vision``: it turns images into text), so
    that routing does not skip experts that lack them (see :mod:`moe_core.capabilities`)."""

    @abc.abstractmethod
    async def prepare(self, run: Run, expert: str, request: ChatRequest) -> ChatRequest:
        """The request ``expert`` gets; ``run.card(expert)`` says what it can read."""


class ParallelOptions(CombinerOptions):
    experts: list[str] = Field(
        default_factory=list, description="Experts to call; default: the decision's"
    )


class ParallelCombiner(Combiner):
    """A combiner that asks several experts at once: the decision's experts and fallbacks, or
    those its ``experts`` option names."""

    options: ParallelOptions

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        named = {f"experts[{i}]": name for i, name in enumerate(self.options.experts)}
        require_known_experts(experts, "combiner", named)

    def experts(self, run: Run) -> list[str]:
        if self.options.experts:
            return list(self.options.experts)
        return list(dict.fromkeys([*run.decision.experts, *run.decision.fallbacks]))

    async def answers(self, run: Run) -> list[tuple[str, ExpertResult]]:
        """Every expert's answer, asked all at once; failures are recorded and tolerated as long
        as one expert answers."""
        names = self.experts(run)
        results = await asyncio.gather(*(run.call(name) for name in names), return_exceptions=True)
        answered, errors = [], []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, MoEError):
                run.record_fallback(name, result)
                errors.append((name, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                answered.append((name, result))
        if not answered:
            raise every_failure(errors)
        return answered


def every_failure(errors: list[tuple[str, MoEError]]) -> MoEError:
    """The first failure, its message naming every expert that failed."""
    first = errors[0][1]
    if len(errors) > 1:
        first.message = "every expert failed: " + "; ".join(f"{n}: {e.message}" for n, e in errors)
    return first


class Frontend(Part):
    """A set of HTTP routes speaking one wire format.

    It is mounted unless ``server.frontends.<name>.enabled`` is false. A frontend that answers
    paths no other route matched (a catch-all) sets the class attribute ``mounted_by_default``
    to false, so that it answers only where a configuration asks with ``enabled: true``. One
    whose pages must load before a key is known adds their exact paths to
    ``app[moe_core.appkeys.PUBLIC_PATHS_KEY]``. One whose wire format has its own error shape
    has its paths' errors rendered in it with :func:`moe_core.server.render_errors`.
    """

    mounted_by_default: ClassVar[bool] = True

    @abc.abstractmethod
    def setup(self, app: web.Application) -> None:
        """Add routes to ``app``; reach the pipeline through ``request.app[MOE_KEY]``."""


def require_known_experts(
    experts: Mapping[str, ExpertCard], path: str, named: Mapping[str, str | None]
) -> None:
    """Raise :class:`ConfigError` for the first option naming an expert that is not configured.

    :param path: where the options live in the config (``gate``, ``combiner``).
    :param named: option key to the expert name it holds (``None`` means unset).
    """
    for key, name in named.items():
        if name is not None and name not in experts:
            raise ConfigError(
                f"{path}.{key}: unknown expert {name!r}; configured experts: {', '.join(experts)}"
            )
