"""The pipeline: gate, then combiner, then experts, with trackers told about every step.

:class:`MoE` is the whole gateway as a Python object; the HTTP server is a thin layer over it::

    moe = MoE.from_config("moe.yaml")
    async with moe:
        decision = await moe.route({"messages": [{"role": "user", "content": "hi"}]})
        response = await moe.complete({"messages": [{"role": "user", "content": "hi"}]})
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Protocol, TypeVar, runtime_checkable

import structlog
from pydantic import ValidationError

from moe_core import capabilities
from moe_core.config import ExpertConfig, InstanceConfig, MoEConfig, load_config
from moe_core.errors import (
    ConfigError,
    ExpertTimeout,
    ExpertUnavailable,
    GateError,
    InvalidRequest,
    ModelNotFound,
    MoEError,
    PluginError,
    invalid_request,
)
from moe_core.events import (
    Event,
    ExpertCalled,
    RequestFinished,
    RequestStarted,
    RouteDecided,
    elapsed_ms,
)
from moe_core.models import (
    ChatRequest,
    Delta,
    ExpertCard,
    ExpertResult,
    MoEMetadata,
    MoEResponse,
    RoutingDecision,
)
from moe_core.options import CombinerOptions
from moe_core.parts import Combiner, Gate, Preparer, Tracker
from moe_core.plugins import MoEPluginManager, Part, create_plugin_manager
from moe_core.pool import ExpertPool, ExpertSlot
from moe_core.run import CallCache, CallGuard, Run
from moe_core.signals import ExperimentSignal, find_signals

log = structlog.get_logger(__name__)
R = TypeVar("R")


@runtime_checkable
class Resource(Protocol):
    """Something the parts of one gateway share (a tracking store, a connection pool): started
    before any part and closed after every part (see :meth:`MoE.resource`)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def new_request_id() -> str:
    """32 random hex digits (as a UUID's hex, without building the UUID: a fifth of the cost)."""
    return os.urandom(16).hex()


AUTO = "auto"
# Raw bodies go straight to pydantic's validator: ``model_validate_json`` only wraps it.
_validate_request_json = ChatRequest.__pydantic_validator__.validate_json
RequestLike = ChatRequest | Mapping[str, Any] | str | bytes


class MoE:
    """A configured gateway: experts, one gate, combiners and trackers, built from plugins."""

    def __init__(
        self,
        config: MoEConfig,
        manager: MoEPluginManager,
        *,
        pool: ExpertPool,
        gate: Gate,
        combiner: Combiner,
        trackers: dict[str, Tracker],
        preparers: Sequence[Preparer] = (),
    ) -> None:
        self.config = config
        self.plugins = manager
        self.experts = pool
        self.gate = gate
        self.default_combiner = combiner
        self.auto_names = frozenset((AUTO, *config.gate.aliases))
        self.trackers = trackers
        self.preparers = tuple(preparers)
        # Each event type's observers, so that an event no tracker wants costs nothing.
        self._observers: dict[type[Event], tuple[Tracker, ...]] = {
            kind: tuple(tracker for tracker in trackers.values() if kind in tracker.observes)
            for kind in (RequestStarted, RouteDecided, ExpertCalled, RequestFinished)
        }
        self._resources: dict[str, Any] = {}
        # Guards that hold something once they admit a call (a breaker's single probe) go last,
        # so that no later guard can refuse the call they admitted.
        self.guards: list[CallGuard] = sorted(
            find_signals(trackers, CallGuard), key=lambda guard: guard.admits_last
        )
        self.caches: list[CallCache] = list(find_signals(trackers, CallCache))
        self.experiments = list(find_signals(trackers, ExperimentSignal))
        self._combiners: dict[str, Combiner] = {config.combiner.kind: combiner}
        self._started = False
        self.ready = False
        """True once the gate and combiner have started."""
        self.starting = False
        """True while :meth:`start` loads them: requests meanwhile get a 503."""

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | MoEConfig | None = None,
        *,
        plugin_manager: MoEPluginManager | None = None,
    ) -> MoE:
        """Build a gateway from a YAML path, a dict, a :class:`MoEConfig` or the default.

        Raises :class:`ConfigError` or :class:`PluginError` with a message naming the key or the
        plugin at fault. Nothing heavy happens here; models load in :meth:`start`.
        """
        config = load_config(
            dict(source) if isinstance(source, Mapping) else source, plugins=plugin_manager
        )
        manager = plugin_manager or config.plugin_manager
        if manager is None:
            manager = create_plugin_manager(
                disable=config.plugins.disable, require=config.plugins.require
            )
        slots = [
            build_slot(manager, config, name, expert_config)
            for name, expert_config in config.experts.items()
        ]
        gate = build_part(manager, config, "gate", config.gate, config.gate.kind, "gate")
        combiner = build_part(
            manager, config, "combiner", config.combiner, config.combiner.kind, "combiner"
        )
        trackers: dict[str, Tracker] = {
            name: build_part(manager, config, "tracker", tracker, name, f"trackers.{name}")
            for name, tracker in config.trackers.items()
        }
        preparers = [
            build_part(manager, config, "preparer", preparer, name, f"preparers.{name}")
            for name, preparer in config.preparers.items()
        ]
        moe = cls(
            config,
            manager,
            pool=ExpertPool(slots),
            gate=gate,
            combiner=combiner,
            trackers=trackers,
            preparers=preparers,
        )
        cards = moe.experts.cards()
        for part in (gate, combiner, *preparers):
            part.check_experts(cards)
        experts = (slot.expert for slot in slots)
        for part in (*experts, *trackers.values(), *preparers, gate, combiner):
            part.attach(moe)
        return moe

    def resource(self, key: str, factory: Callable[[], R]) -> R:
        """The one object of this gateway kept under ``key``, made by ``factory`` on first ask.

        Parts that share something (trackers that keep state in one store) ask for it here in
        :meth:`Part.attach`. A :class:`Resource` is started before every part and closed after
        them; ``key`` names it in errors, so use the config path it comes from
        (``tracking.store``).
        """
        if key not in self._resources:
            self._resources[key] = factory()
        resource: R = self._resources[key]
        return resource

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, *, wait: bool = True, experts: bool = True) -> None:
        """Start every part.

        :param wait: wait for experts to load; with ``False`` they load in the background and
            calls to one that is not ready get a 503 (or go to its fallbacks).
        :param experts: ``False`` starts only what routing needs (``moe route``).
        """
        if self._started:
            return
        self._started = self.starting = True
        for key, resource in self._resources.items():
            if not isinstance(resource, Resource):
                continue
            try:
                await resource.start()
            except Exception as exc:
                self._started = False
                raise ConfigError(f"{key}: cannot start: {exc}") from exc
        for part in (*self.trackers.values(), *self.preparers):
            await part.start()
        await self.gate.start()
        await self.default_combiner.start()
        self.ready, self.starting = True, False
        if experts:
            await self.experts.start(wait=wait)

    async def aclose(self) -> None:
        if not self._started:
            return
        self._started = self.ready = False
        await self.experts.close()
        for part in (
            self.gate,
            *self._combiners.values(),
            *self.trackers.values(),
            *self.preparers,
        ):
            try:
                await part.close()
            except Exception as exc:
                log.warning("part.close_failed", part=part.name, error=str(exc))
        for resource in reversed(self._resources.values()):
            if isinstance(resource, Resource):
                await resource.close()

    async def __aenter__(self) -> MoE:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- requests ------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        """What a client may put in ``model``: ``auto``, the gate's aliases, every expert."""
        return [AUTO, *self.config.gate.aliases, *self.experts]

    @staticmethod
    def parse(request: RequestLike) -> ChatRequest:
        """Validate a request from a model, a dict or raw JSON, as a 400 naming the field."""
        if isinstance(request, ChatRequest):
            return request
        try:
            if isinstance(request, (bytes, str)):  # a tuple: faster than a union
                return _validate_request_json(request)
            return ChatRequest.model_validate(dict(request), strict=False)
        except ValidationError as exc:
            raise invalid_request(exc) from None

    async def route(self, request: RequestLike) -> RoutingDecision:
        """The routing decision for a request, without calling any expert."""
        parsed = self.parse(request)
        return await self._decide(parsed, self.needs(parsed))

    def needs(self, request: ChatRequest) -> dict[str, str]:
        """What the request needs from an expert that no preparer provides for every expert."""
        wanted = capabilities.needs(request)
        for preparer in self.preparers:
            for need in preparer.provides:
                wanted.pop(need, None)
        return wanted

    async def _decide(self, request: ChatRequest, wanted: dict[str, str]) -> RoutingDecision:
        if self.starting:
            raise ExpertUnavailable(
                "The gateway is still starting (loading its gate); retry shortly",
                code="gateway_loading",
                headers={"Retry-After": "5"},
            )
        hints = request.moe
        forced = None if hints is None else hints.force_expert
        target = forced or request.model
        if target and target not in self.auto_names:
            if target not in self.experts:
                param = "moe.force_expert" if forced else "model"
                raise ModelNotFound(
                    f"The model {target!r} does not exist; available: "
                    f"{', '.join(self.model_ids())}",
                    param=param,
                )
            how = "moe.force_expert" if forced else "model"
            lacking = capabilities.missing(self.experts[target].card, wanted)
            if lacking and not self.config.server.drop_unsupported_params:
                raise capabilities.unsupported(target, lacking)
            # That expert alone (with its own fallbacks), whatever the configured strategy would
            # do with the gate's choices; a request can still ask for a strategy by name.
            return RoutingDecision(
                experts=[target],
                strategy="single",
                gate="direct",
                confidence=1.0,
                rationale=f"the request named expert {target!r} in {how}",
            )
        cards = self.experts.cards()
        skipped = []
        if wanted:
            skipped = sorted(
                name for name, card in cards.items() if capabilities.missing(card, wanted)
            )
            if len(skipped) == len(cards) and not self.config.server.drop_unsupported_params:
                raise capabilities.unsupported(", ".join(skipped), wanted)
            if len(skipped) < len(cards):
                cards = {name: card for name, card in cards.items() if name not in skipped}
        try:
            decision = await self.gate.route(request, cards, self.trackers)
        except MoEError:
            raise
        except Exception as exc:
            log.exception("gate.failed", gate=self.gate.name)
            raise GateError(f"gate {self.gate.name!r} failed: {type(exc).__name__}: {exc}") from exc
        names = self.experts.names
        if not names.issuperset(decision.experts) or not names.issuperset(decision.fallbacks):
            chosen = (*decision.experts, *decision.fallbacks)
            unknown = [name for name in chosen if name not in names]
            raise GateError(f"gate {self.gate.name!r} chose unknown expert(s) {unknown}")
        if not decision.gate:
            decision.gate = self.gate.name
        decision.strategy = decision.strategy or self.default_combiner.name
        if skipped and len(skipped) < len(self.experts.names):
            capabilities.steer(decision, cards, skipped, wanted)
        if self.experiments and not self.gate.runs_experiments:
            _experiment(decision, request, self.experiments, cards)
        return decision

    def __contains__(self, expert: object) -> bool:
        return expert in self.experts

    async def _combiner(self, name: str) -> Combiner:
        """The combiner of kind ``name``; kinds other than the configured one are built on first
        use with default options."""
        combiner = self._combiners.get(name)
        if combiner is None:
            try:
                kind = self.plugins.kinds.get("combiner", name)
                combiner = kind.build(name, kind.options())
                combiner.attach(self)
            except (PluginError, ValidationError, ConfigError) as exc:
                raise InvalidRequest(
                    f"strategy {name!r} is not available: {exc}", param="moe.strategy"
                ) from None
            await combiner.start()
            # Two first requests for one strategy may both get here: keep the first, close ours.
            kept = self._combiners.setdefault(name, combiner)
            if kept is not combiner:
                await combiner.close()
            return kept
        return combiner

    async def complete(self, request: RequestLike, *, request_id: str | None = None) -> MoEResponse:
        """Route and answer a request in one piece."""
        execution = await self._begin(request, request_id)
        try:
            if execution.deadline_s is None:  # no timer to arm: most combiners have no deadline
                result = await execution.combiner.complete(execution.run)
            else:
                async with asyncio.timeout(execution.deadline_s):
                    result = await execution.combiner.complete(execution.run)
        except TimeoutError:
            error = execution.deadline_error()
            await execution.fail(error)
            raise error from None
        except MoEError as exc:
            await execution.fail(exc)
            raise
        return await execution.finish(result)

    async def open_stream(
        self, request: RequestLike, *, request_id: str | None = None
    ) -> MoEStream:
        """Route a request and return its stream of deltas (nothing is generated until read)."""
        return MoEStream(await self._begin(request, request_id))

    async def _begin(self, request: RequestLike, request_id: str | None) -> _Execution:
        started = time.perf_counter()
        parsed = self.parse(request)
        request_id = request_id or new_request_id()
        if self._observers[RequestStarted]:
            await self.emit(RequestStarted(request_id=request_id, request=parsed))
        wanted = self.needs(parsed)
        try:
            decision = await self._decide(parsed, wanted)
            # The combiner the request asked for, or its decision named, or the configured one.
            hints = parsed.moe
            name = (None if hints is None else hints.strategy) or decision.strategy
            combiner = self.default_combiner if name is None else await self._combiner(name)
        except MoEError as exc:
            await self.emit(_finished(request_id, started, exc))
            raise
        if self._observers[RouteDecided]:
            await self.emit(RouteDecided(request_id=request_id, request=parsed, decision=decision))
        run = Run(
            request_id=request_id,
            request=parsed,
            decision=decision,
            pool=self.experts,
            emit=self.emit,
            guards=self.guards,
            caches=self.caches,
            preparers=self.preparers,
            needs=wanted,
            drop_unsupported=self.config.server.drop_unsupported_params,
        )
        return _Execution(self, run, combiner, started)

    async def emit(self, event: Event) -> None:
        """Tell every tracker that observes such events; a tracker that fails is logged and
        never fails the request."""
        for tracker in self._observers[type(event)]:
            try:
                await tracker.observe(event)
            except Exception as exc:
                log.error(
                    "tracker.failed",
                    tracker=tracker.name,
                    on=type(event).__name__,
                    error=str(exc),
                )


class _Execution:
    """Bookkeeping shared by the complete and streaming paths of one request."""

    def __init__(self, moe: MoE, run: Run, combiner: Combiner, started: float) -> None:
        self.moe = moe
        self.run = run
        self.combiner = combiner
        self.started = started
        self.id = f"chatcmpl-{run.request_id}"
        self.created = int(time.time())
        options = combiner.options
        self.deadline_s = options.deadline_s if isinstance(options, CombinerOptions) else None

    def deadline_error(self) -> ExpertTimeout:
        return ExpertTimeout(
            f"combiner {self.combiner.name!r}: no complete answer within its "
            f"{self.deadline_s} s deadline"
        )

    def metadata(self) -> MoEMetadata:
        run, decision = self.run, self.run.decision
        usage = run.reported_usage
        cost = round(run.cost_usd, 8) if usage is not None and usage.total_tokens else None
        return MoEMetadata(
            request_id=run.request_id,
            gate=decision.gate,
            strategy=self.combiner.name,
            experts_used=run.experts_used,
            rationale=decision.rationale,
            confidence=decision.confidence,
            runner_up=decision.runner_up,
            latency_ms=run.latency_ms,
            total_latency_ms=elapsed_ms(self.started),
            fallbacks=run.fallbacks,
            notes=run.notes,
            sources=run.sources,
            cost_usd=cost,
            overrides=decision.overrides,
        )

    @property
    def model(self) -> str:
        """The expert that answered, which is what ``model`` in an OpenAI response means."""
        used = self.run.experts_used
        return used[-1] if used else self.run.streaming or self.run.decision.experts[0]

    async def finish(self, result: ExpertResult) -> MoEResponse:
        usage = self.run.reported_usage
        if result.usage is None and usage is not None and usage.total_tokens:
            result = result.model_copy(update={"usage": usage})
        metadata = self.metadata()
        await self.moe.emit(
            RequestFinished(
                request_id=self.run.request_id,
                ok=True,
                latency_ms=metadata.total_latency_ms,
                metadata=metadata,
            )
        )
        return MoEResponse(
            id=self.id, created=self.created, model=self.model, result=result, metadata=metadata
        )

    async def fail(self, error: MoEError) -> None:
        await self.moe.emit(_finished(self.run.request_id, self.started, error))


class MoEStream:
    """A routed request's answer as an async iterator of :class:`Delta`.

    ``metadata`` is filled in once the stream is exhausted. Close it (``aclose()`` or
    ``async with``) to stop generation early and release the expert.
    """

    def __init__(self, execution: _Execution) -> None:
        self._execution = execution
        self.id = execution.id
        self.created = execution.created
        self.decision = execution.run.decision
        self.metadata: MoEMetadata | None = None
        self._deltas = self._generate()

    @property
    def model(self) -> str:
        return self._execution.model

    @property
    def request(self) -> ChatRequest:
        return self._execution.run.request

    async def _generate(self) -> AsyncIterator[Delta]:
        execution = self._execution
        deadline = execution.deadline_s
        ends_at = None if deadline is None else asyncio.get_running_loop().time() + deadline
        try:
            async with aclosing(execution.combiner.stream(execution.run)) as deltas:
                while True:
                    # The deadline covers each wait for the next delta, never the caller's time
                    # between them (a timeout must not span a yield); none, no timer per delta.
                    try:
                        if ends_at is None:
                            delta = await anext(deltas)
                        else:
                            async with asyncio.timeout_at(ends_at):
                                delta = await anext(deltas)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise execution.deadline_error() from None
                    yield delta
        except MoEError as exc:
            await execution.fail(exc)
            raise
        meta = self.metadata = execution.metadata()
        await execution.moe.emit(
            RequestFinished(
                request_id=meta.request_id, ok=True, latency_ms=meta.total_latency_ms, metadata=meta
            )
        )

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._deltas

    async def first(self) -> Delta | None:
        """The first delta (None for an empty answer), for a frontend to read before it sends
        any byte, so that a failure before the answer starts is a proper HTTP error; the stream
        is closed when that read fails. Iterating afterwards goes on from the second delta."""
        try:
            return await anext(self._deltas, None)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        await self._deltas.aclose()

    async def __aenter__(self) -> MoEStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _experiment(
    decision: RoutingDecision,
    request: ChatRequest,
    experiments: list[ExperimentSignal],
    cards: Mapping[str, ExpertCard],
) -> None:
    """A running A/B test's arm replaces the gate's first pick, whatever the gate."""
    for tracker in experiments:
        assigned = tracker.assignment(request, request.hints.task_type)
        if assigned is None or assigned not in cards:
            continue
        if assigned != decision.experts[0]:
            others = [name for name in decision.experts if name != assigned]
            decision.experts = [assigned, *others[1:]]
        decision.rationale += f"; an A/B test assigned this request to {assigned}"
        return


def _finished(request_id: str, started: float, error: MoEError) -> RequestFinished:
    return RequestFinished(
        request_id=request_id,
        ok=False,
        latency_ms=elapsed_ms(started),
        error=error.message,
        error_code=error.code,
    )


def build_slot(
    manager: MoEPluginManager, config: MoEConfig, name: str, spec: ExpertConfig
) -> ExpertSlot:
    """One configured expert, built, with its card as the configuration overrides it."""
    expert = build_part(manager, config, "expert", spec, name, f"experts.{name}")
    return ExpertSlot(
        expert,
        kind=spec.kind,
        card=expert.card().model_copy(update=spec.card_overrides()),
        fallbacks=spec.fallbacks,
        timeout_s=spec.timeout_s,
    )


def build_part(
    manager: MoEPluginManager,
    config: MoEConfig,
    part: Part,
    instance: InstanceConfig,
    name: str,
    path: str,
) -> Any:
    """Build one configured instance of a kind: options validated against the kind's model and
    any failure of the factory turned into a startup error naming the key path."""
    kind = manager.kinds.get(part, instance.kind)
    options = config.validate_instance(path, kind.options, instance.options())
    try:
        return kind.build(name, options)
    except (ConfigError, PluginError):
        raise
    except Exception as exc:
        raise ConfigError(f"{path}: {type(exc).__name__}: {exc}") from exc
