"""The ``response-cache`` tracker: answers a repeated call to an expert from a remembered answer.

It implements the core's :class:`~moe_core.run.CallCache`, so every expert call asks it first,
streamed or not (a hit is replayed as one delta), and every successful answer is offered to it.
Whether a call may use the cache is decided per call, most specific first:

1. the expert must be listed in ``experts`` (nothing is cached by default);
2. ``moe: {cache: false}`` in the request turns the cache off for it;
3. ``Cache-Control: no-store`` neither reads nor writes; ``no-cache`` writes without reading;
4. a sampled request (temperature unset or above 0, no seed) is left alone, since its answers
   are meant to differ, unless the tracker sets ``sampled: true`` or the request
   ``moe: {cache: true}``.

A hit says so in ``moe_metadata.notes`` and is reported to trackers as a cached call that spent
nothing (its answer carries no usage). A store that fails (Redis down) means a miss, never a
failed request.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any

import structlog

from moe_cache.embedding import embed_question
from moe_cache.keys import CallKey, call_key, fingerprint, is_sampled
from moe_cache.middleware import POLICY, Policy
from moe_cache.options import ALL, CacheOptions
from moe_cache.stores import CacheStore, open_store
from moe_core import ConfigError, MoE, Tracker
from moe_core.embedding import Embedder
from moe_core.models import ChatRequest, ExpertResult
from moe_core.parts import require_known_experts
from moe_core.run import Run

if TYPE_CHECKING:
    from moe_cache.semantic import SemanticIndex
    from moe_core.events import Event

log = structlog.get_logger(__name__)

PENDING = 1024
"""Calls whose key (and question vector) a lookup computed, kept for their ``remember``."""

OUTCOMES = ("hit_exact", "hit_semantic", "miss", "bypass", "stored", "too_large", "error")
"""What the counters count, per expert: see :meth:`ResponseCacheTracker.cache_counts`."""


class ResponseCacheTracker(Tracker):
    """A per-expert response cache, exact or semantic, in memory, SQLite or Redis."""

    options: CacheOptions
    observes = ()  # it answers calls; it needs no events

    def __init__(self, name: str, options: CacheOptions) -> None:
        super().__init__(name, options)
        self._every_expert = options.experts == ALL
        self._experts = frozenset(() if options.experts == ALL else options.experts)
        self.store: CacheStore = open_store(options)
        self._moe: MoE | None = None
        self._fingerprints: dict[str, bytes] = {}
        self._index: SemanticIndex | None = None
        self._pending: OrderedDict[
            tuple[int, str], tuple[ChatRequest, CallKey, list[float] | None]
        ] = OrderedDict()
        self._counts: dict[str, Counter[str]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def attach(self, moe: MoE) -> None:
        where = f"trackers.{self.name}"
        cards = moe.experts.cards()
        if not self._every_expert:
            named = {f"experts[{i}]": name for i, name in enumerate(self.options.experts)}
            require_known_experts(cards, where, named)
        self._moe = moe
        self._fingerprints = {
            name: fingerprint(slot.kind, slot.expert.options) for name, slot in moe.experts.items()
        }
        semantic = self.options.semantic
        if self.options.mode != "semantic" or semantic is None:
            return
        require_known_experts(cards, where, {"semantic.embedder": semantic.embedder})
        if not isinstance(moe.experts[semantic.embedder].expert, Embedder):
            raise ConfigError(
                f"{where}.semantic.embedder: expert {semantic.embedder!r} cannot embed (it has no "
                "embed method); name an embedding expert"
            )
        try:
            from moe_cache.semantic import SemanticIndex
        except ImportError as exc:
            raise ConfigError(
                f"{where}.mode: semantic needs numpy ({exc}); pip install 'moe-cache[semantic]'"
            ) from exc
        self._index = SemanticIndex(
            max_entries=self.options.max_entries,
            max_candidates=semantic.max_candidates,
            ttl_s=self.options.ttl_s,
        )

    async def start(self) -> None:
        try:
            await self.store.start()
        except Exception as exc:
            raise ConfigError(
                f"trackers.{self.name}.store: cannot open the {self.options.store} cache: {exc}"
            ) from exc

    async def close(self) -> None:
        await self.store.close()

    async def observe(self, event: Event) -> None:
        pass

    # -- CallCache ----------------------------------------------------------------------------

    async def lookup(self, run: Run, expert: str, request: ChatRequest) -> ExpertResult | None:
        policy = self._policy(run, expert, request)
        if policy is None or not policy.read:
            if policy is not None or self._caches(expert):
                self._count(expert, "bypass")
            return None
        try:
            return await self._lookup(run, expert, request)
        except Exception as exc:  # the cache never fails a call: the expert answers
            return self._failed(expert, "lookup", exc)

    async def remember(
        self, run: Run, expert: str, request: ChatRequest, result: ExpertResult
    ) -> None:
        pending = self._pending.pop((id(request), expert), None)
        policy = self._policy(run, expert, request)
        if policy is None or not policy.write or not _worth_keeping(result):
            return
        if pending is not None and pending[0] is not request:
            pending = None
        try:
            await self._remember(run, expert, request, result, pending)
        except Exception as exc:  # an answer not kept is a later miss, never a failed call
            self._failed(expert, "remember", exc)

    async def _lookup(self, run: Run, expert: str, request: ChatRequest) -> ExpertResult | None:
        key = self._key(expert, request)
        raw = await self.store.get(key.exact)
        if raw is not None and (result := _decode(raw)) is not None:
            self._count(expert, "hit_exact")
            run.note(f"{expert!r} answered from the cache (exact)")
            return result
        vector = None
        if self._index is not None and key.question is not None and key.context is not None:
            vector = await self._embed(run, key.question)
            hit = None if vector is None else await self._similar(run, expert, key, vector)
            if hit is not None:
                return hit
        self._remember_key(expert, request, key, vector)
        self._count(expert, "miss")
        return None

    async def _remember(
        self,
        run: Run,
        expert: str,
        request: ChatRequest,
        result: ExpertResult,
        pending: tuple[ChatRequest, CallKey, list[float] | None] | None,
    ) -> None:
        raw = result.model_dump_json(exclude={"usage"}).encode()
        if len(raw) > self.options.max_entry_bytes:
            self._count(expert, "too_large")
            return
        key, vector = (pending[1], pending[2]) if pending else (self._key(expert, request), None)
        await self.store.put(key.exact, raw)
        self._count(expert, "stored")
        if self._index is not None and key.question is not None and key.context is not None:
            vector = vector or await self._embed(run, key.question)
            if vector is not None:
                self._index.add(key.context, key.exact, vector)

    # -- what callers and /-/stats read -------------------------------------------------------

    def cache_counts(self) -> dict[str, dict[str, int]]:
        """Per expert, how many lookups hit (exactly, semantically), missed or were bypassed
        (not eligible), and how many answers were stored, too large to store, or lost to a
        store error. Label values are configured expert names and :data:`OUTCOMES` only."""
        return {expert: dict(counts) for expert, counts in self._counts.items()}

    def snapshot(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "mode": self.options.mode,
            "store": self.options.store,
            "experts": self.cache_counts(),
        }
        if self._index is not None:
            snapshot["semantic_entries"] = len(self._index)
        return snapshot

    # -- inside -------------------------------------------------------------------------------

    def _caches(self, expert: str) -> bool:
        return self._every_expert or expert in self._experts

    def _policy(self, run: Run, expert: str, request: ChatRequest) -> Policy | None:
        """What this call may do with the cache, or ``None`` when it must leave it alone."""
        if not self._caches(expert):
            return None
        asked = run.request.hints.cache
        if asked is False:
            return None
        policy = POLICY.get()
        if not (policy.read or policy.write):
            return None
        if is_sampled(request) and not (asked or self.options.sampled):
            return None
        return policy

    def _key(self, expert: str, request: ChatRequest) -> CallKey:
        expert_fingerprint = self._fingerprints.get(expert, expert.encode())
        return call_key(request, expert_fingerprint, semantic=self._index is not None)

    def _remember_key(
        self, expert: str, request: ChatRequest, key: CallKey, vector: list[float] | None
    ) -> None:
        """Keep a miss's key (and vector) for its ``remember``, which gets the same request
        object (several experts may get the same one: the expert is part of the key). The
        request is kept with it, so that a reused ``id`` never matches another request."""
        self._pending[(id(request), expert)] = (request, key, vector)
        while len(self._pending) > PENDING:
            self._pending.popitem(last=False)

    async def _embed(self, run: Run, question: str) -> list[float] | None:
        assert self._moe is not None and self.options.semantic is not None
        slot = self._moe.experts[self.options.semantic.embedder]
        return await embed_question(self._moe, slot, question, run.request_id)

    async def _similar(
        self, run: Run, expert: str, key: CallKey, vector: list[float]
    ) -> ExpertResult | None:
        assert self._index is not None and self.options.semantic is not None
        assert key.context is not None
        try:
            found = self._index.nearest(key.context, vector)
        except Exception as exc:  # a vector of another size or shape: no match, not a failure
            log.warning("cache.semantic_failed", tracker=self.name, error=repr(exc))
            return None
        if found is None or found[1] < self.options.semantic.threshold:
            return None
        answered, similarity = found
        raw = await self.store.get(answered)
        result = None if raw is None else _decode(raw)
        if result is None:  # expired or evicted from the store: forget the question too
            self._index.discard(key.context, answered)
            return None
        self._count(expert, "hit_semantic")
        run.note(f"{expert!r} answered from the cache (semantic, similarity {similarity:.2f})")
        return result

    def _count(self, expert: str, outcome: str) -> None:
        counts = self._counts.get(expert)
        if counts is None:
            counts = self._counts[expert] = Counter()
        counts[outcome] += 1

    def _failed(self, expert: str, operation: str, exc: Exception) -> None:
        """A store (or anything else) that fails the cache: the call goes to the expert, the
        failure to the log and the ``error`` count."""
        self._count(expert, "error")
        log.warning(
            "cache.store_failed",
            tracker=self.name,
            store=self.options.store,
            operation=operation,
            error=repr(exc),
        )


def _worth_keeping(result: ExpertResult) -> bool:
    """An answer with something in it: an empty one is more likely a glitch than an answer."""
    return bool(result.content or result.tool_calls or result.images or result.audio)


def _decode(raw: bytes) -> ExpertResult | None:
    """The answer stored as ``raw``, or ``None`` for an entry this version cannot read."""
    try:
        return ExpertResult.model_validate_json(raw)
    except ValueError:
        log.warning("cache.unreadable_entry", size=len(raw))
        return None
