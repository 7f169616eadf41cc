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
for everyone. Nor does a 429: a rate-limited provider is busy, not broken; nor ``expert_busy``:
the gateway's own queue or connection pool for the expert is full, the provider is fine.

**Cooldown**: an upstream that says when to come back (``Retry-After`` on a 429, or on an
upstream error such as its 503, a 502 here) is not called again before then: calls are refused
at once with a 503 ``expert_cooling_down`` (the time left as ``Retry-After``), so the fallback
chain answers without first waiting on a refusal. A cooldown is not a failure and never opens
the breaker; ``max_cooldown_s`` caps it, ``cooldown: false`` turns it off.

The state lives in the store, so on Redis every instance sees the same breaker: failures seen by
one instance open it for all. The guard (:meth:`admit`) reads the store on every call when it is
shared; gates read the local view through :class:`moe_core.signals.BreakerSignal`.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import Field

from moe_core.errors import ExpertUnavailable
from moe_core.events import Event, ExpertCalled
from moe_core.plugins import Options
from moe_tracking.base import StoredTracker
from moe_tracking.store import Hash

_BREAKER = "breaker:"
_PROBE = "breaker-probe:"
_BUSY = "expert_busy"  # the gateway's own queue or pool for the expert is full
# Statuses whose Retry-After comes from an upstream (rate limited; failed, as an upstream's 503
# is a 502 here), where a 503 of the gateway's own may carry one for its caller.
_ASKED_FOR_A_PAUSE = frozenset({429, 502})


class CircuitOpen(ExpertUnavailable):
    """A call was refused because the circuit breaker of its expert (or provider) is open."""

    code = "circuit_open"


class CoolingDown(ExpertUnavailable):
    """A call was refused because the expert's upstream asked for a pause (``Retry-After``)."""

    code = "expert_cooling_down"


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
    cooldown: bool = Field(
        True, description="Refuse calls to an expert until its upstream's Retry-After has passed"
    )
    max_cooldown_s: float = Field(
        300.0, gt=0, description="The longest cooldown, whatever Retry-After asks"
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
        cooling = float(state.get("cooldown_until", 0.0)) - time.time()
        if cooling > 0:
            raise CoolingDown(
                f"expert {expert!r} not called: its upstream asked for a pause (Retry-After) "
                f"that has {cooling:.0f} s left (last: {state.get('cooldown_error', 'unknown')})",
                headers={"Retry-After": str(max(1, math.ceil(cooling)))},
            )
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
        if not isinstance(event, ExpertCalled) or event.cached:  # cached: the expert was not called
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
        pause = self._pause(event)
        if pause is not None:
            self._view[target] = await self.store.update(
                key,
                set={
                    "cooldown_until": time.time() + pause,
                    "cooldown_error": (event.error or "")[:300],
                },
            )
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
        return event.error_code not in self.options.ignore_codes and event.error_code != _BUSY

    def _pause(self, event: ExpertCalled) -> float | None:
        """How long the upstream asked not to be called (its Retry-After), capped."""
        retry_after = event.retry_after
        if not retry_after or not self.options.cooldown or event.error_code == _BUSY:
            return None
        if event.error_status not in _ASKED_FOR_A_PAUSE:
            return None
        seconds = _seconds(retry_after)
        return None if seconds is None else min(seconds, self.options.max_cooldown_s)

    async def refresh(self) -> None:
        for key, state in (await self.store.scan(_BREAKER)).items():
            self._view[key.removeprefix(_BREAKER)] = state

    # -- what gates, endpoints and the Python API read -----------------------------------

    def circuit_open(self, provider: str) -> bool:
        """Whether calls are refused now: open (after the timeout, a probe may go: not open) or
        cooling down; ``provider`` is an expert's name under ``scope: expert``."""
        state = self._view.get(provider)
        if not state:
            return False
        if float(state.get("cooldown_until", 0.0)) > time.time():
            return True
        if state.get("state") != "open":
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
        cooling = float(state.get("cooldown_until", 0.0)) - time.time()
        return {
            "state": name,
            "cooldown_s": round(cooling, 3) if cooling > 0 else None,
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


def _seconds(retry_after: str) -> float | None:
    """A Retry-After's seconds from now: a number of seconds, or an HTTP date."""
    try:
        seconds = float(retry_after)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(retry_after).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return seconds if seconds > 0 else None
