"""The ``circuit-breaker`` tracker: stop calling an expert whose provider keeps failing.

Per expert (or per provider, ``scope: provider``): **closed** (calls go through) → **open** after
``failure_threshold`` consecutive failures (calls fail fast with a 503 ``circuit_open``, so the
combiner's fallback chain takes over) → **half-open** once ``reset_timeout_s`` has passed: exactly
one call, the probe, is let through (a claim in the store, so one probe across all instances) →
**closed** if the probe succeeds, open again for another timeout if it fails.

Only the provider's failures count: errors with a 5xx status (the upstream failed or answered
something unreadable, could not be reached, timed out) and 408. Errors the caller caused (every
other 4xx: an invalid parameter, a prompt over the context window, a refused content, an unknown
model) say nothing about the provider, and counting them would let any client open the breaker
for everyone. Nor does a 429: a rate-limited provider is busy, not broken; the caller gets its
``Retry-After`` and the fallback chain takes over (the ``rate-limit`` tracker's per-expert limits
keep the gateway under a provider's quota).

The state lives in the store, so on Redis every instance sees the same breaker: failures seen by
one instance open it for all. The guard (:meth:`admit`) reads the store on every call when it is
shared; gates read the local view through :class:`moe_core.signals.BreakerSignal`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import Field

from moe_core.errors import ExpertUnavailable
from moe_core.events import Event, ExpertCalled
from moe_core.plugins import Options
from moe_tracking.base import StoredTracker
from moe_tracking.store import Hash

_BREAKER = "breaker:"
_PROBE = "breaker-probe:"


class CircuitOpen(ExpertUnavailable):
    """A call was refused because the circuit breaker of its expert (or provider) is open."""

    code = "circuit_open"


class BreakerOptions(Options):
    failure_threshold: int = Field(5, ge=1, description="Consecutive failures that open it.")
    reset_timeout_s: float = Field(60.0, gt=0, description="Open this long before a probe.")
    probe_timeout_s: float = Field(
        60.0, gt=0, description="A probe that never reports back frees its claim after this."
    )
    scope: str = Field(
        "expert",
        pattern="^(provider|expert)$",
        description="expert: one breaker per expert, so a model that fails does not hide behind "
        "or take down another model of its provider; provider: one per provider, all its experts "
        "open together.",
    )
    ignore_codes: list[str] = Field(
        default_factory=list,
        description="Error codes not to count beyond those the caller caused (4xx), which never "
        "count.",
    )


class CircuitBreakerTracker(StoredTracker):
    """Opens per expert (or provider) after consecutive failures of the provider; one probe
    after a timeout closes it."""

    options: BreakerOptions
    observes = (ExpertCalled,)
    admits_last = True
    """Asked after every other guard: admitting a probe claims it."""

    def __init__(self, name: str, options: BreakerOptions) -> None:
        super().__init__(name, options)
        self._view: dict[str, Hash] = {}
        self._probing: set[str] = set()

    def _target(self, expert: str, provider: str) -> str:
        return expert if self.options.scope == "expert" else provider

    # -- the guard -----------------------------------------------------------------------

    async def admit(self, expert: str, provider: str) -> None:
        target = self._target(expert, provider)
        state = (
            await self.store.get(_BREAKER + target)
            if self.store.shared
            else self._view.get(target, {})
        )
        if self.store.shared:
            self._view[target] = state
        if state.get("state") != "open":
            return
        wait = float(state.get("opened_at", 0.0)) + self.options.reset_timeout_s - time.time()
        if wait > 0:
            raise CircuitOpen(
                f"expert {expert!r} not called: the circuit breaker for {target!r} is open after "
                f"{int(float(state.get('failures', 0)))} consecutive failures (last: "
                f"{state.get('last_error', 'unknown')}); next probe in {wait:.0f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if not await self.store.claim(_PROBE + target, self.options.probe_timeout_s):
            raise CircuitOpen(
                f"expert {expert!r} not called: the circuit breaker for {target!r} is half-open "
                "and its single probe call is in flight",
                headers={"Retry-After": "1"},
            )
        self._probing.add(target)

    # -- events --------------------------------------------------------------------------

    async def observe(self, event: Event) -> None:
        if not isinstance(event, ExpertCalled):
            return
        target = self._target(event.expert, event.provider)
        key = _BREAKER + target
        probe = target in self._probing
        self._probing.discard(target)
        if event.ok:
            # The guard just read the state: write only when there is a streak to end.
            if probe or self._view.get(target, {}).get("failures", 0):
                self._view[target] = await self.store.update(
                    key, set={"state": "closed", "failures": 0.0, "updated_at": time.time()}
                )
            if probe:
                await self.store.delete(_PROBE + target)
            return
        if not self._provider_failed(event):
            # Such a probe says nothing about the provider: free it for the next call.
            if probe:
                await self.store.delete(_PROBE + target)
            return
        now = time.time()
        state = await self.store.update(
            key,
            incr={"failures": 1.0},
            set={"last_error": (event.error or "")[:300], "updated_at": now},
        )
        reopen = probe or state.get("state") != "open"
        if (reopen and state["failures"] >= self.options.failure_threshold) or probe:
            state = await self.store.update(
                key, incr={"opened_count": 1.0}, set={"state": "open", "opened_at": now}
            )
        if probe:
            await self.store.delete(_PROBE + target)
        self._view[target] = state

    def _provider_failed(self, event: ExpertCalled) -> bool:
        status = event.error_status
        if status is not None and 400 <= status < 500 and status != 408:
            return False
        return event.error_code not in self.options.ignore_codes

    async def refresh(self) -> None:
        for key, state in (await self.store.scan(_BREAKER)).items():
            self._view[key.removeprefix(_BREAKER)] = state

    # -- what gates, endpoints and the Python API read -----------------------------------

    def circuit_open(self, provider: str) -> bool:
        """Whether calls are refused now (after the timeout, a probe may go: not open);
        ``provider`` is an expert's name under ``scope: expert``."""
        state = self._view.get(provider)
        if not state or state.get("state") != "open":
            return False
        return float(state.get("opened_at", 0.0)) + self.options.reset_timeout_s > time.time()

    def status(self) -> dict[str, dict[str, Any]]:
        """Every breaker known: state (closed, open, half_open), failures, when it opened."""
        return {target: self._describe(state) for target, state in sorted(self._view.items())}

    def _describe(self, state: Hash) -> dict[str, Any]:
        opened_at = float(state.get("opened_at", 0.0)) or None
        name = str(state.get("state", "closed"))
        retry_in = None
        if name == "open" and opened_at is not None:
            retry_in = opened_at + self.options.reset_timeout_s - time.time()
            if retry_in <= 0:
                name, retry_in = "half_open", None
        return {
            "state": name,
            "consecutive_failures": int(float(state.get("failures", 0.0))),
            "times_opened": int(float(state.get("opened_count", 0.0))),
            "opened_at": opened_at if name != "closed" else None,
            "probe_in_s": None if retry_in is None else round(retry_in, 3),
            "last_error": state.get("last_error") or None,
        }

    async def reset(self, target: str) -> dict[str, Any]:
        """Close a breaker by hand (the provider is known to be back)."""
        self._view[target] = await self.store.update(
            _BREAKER + target,
            set={"state": "closed", "failures": 0.0, "updated_at": time.time()},
        )
        await self.store.delete(_PROBE + target)
        return self._describe(self._view[target])

    async def fresh_status(self) -> dict[str, dict[str, Any]]:
        """:meth:`status` after reading the store (what every instance agrees on now)."""
        await self.refresh()
        return self.status()

    def snapshot(self) -> dict[str, Any]:
        return {"breakers": self.status()}
