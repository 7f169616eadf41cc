"""The ``rate-limit`` tracker: requests and tokens per minute, per API key and per expert.

Counting uses fixed one-minute windows (the key names the minute), incremented atomically in the
store: on Redis every instance increments the same counter, so a limit of N requests a minute
admits exactly N across all of them. A request is admitted when its increment leaves the count
at or under the limit; tokens are charged after each call from its reported usage, and new
requests are refused once a window's tokens reached the limit. A refusal is a 429 in OpenAI's
envelope with ``Retry-After`` set to the seconds left in the window.

Per key, the HTTP server asks :meth:`admit_key` before handling a request (keys are stored as a
hash prefix, never in clear). Per expert, the guard :meth:`admit` refuses a call, so the
combiner's fallback chain takes over.
"""

from __future__ import annotations

import hashlib
import math
import time
from contextvars import ContextVar
from typing import Any

from pydantic import Field

from moe_core.errors import RateLimited
from moe_core.events import Event, ExpertCalled
from moe_core.plugins import Options
from moe_tracking.base import StoredTracker

WINDOW_S = 60.0
_LIMIT = "ratelimit:"

CALLER_KEY: ContextVar[str | None] = ContextVar("moe_caller_key", default=None)
"""The (hashed) API key of the request being handled, set by the server's rate-limit middleware:
events do not carry the caller, and tokens are charged to it when an expert call reports usage."""


class Limits(Options):
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)


class RateLimitOptions(Options):
    per_key: Limits = Field(
        default_factory=Limits, description="Limits for every API key (or anonymous caller)."
    )
    per_expert: dict[str, Limits] = Field(
        default_factory=dict, description="Limits on calls to each named expert."
    )


def key_id(api_key: str | None) -> str:
    """How a caller is named in the store: a short hash of its key, or ``anonymous``."""
    if not api_key:
        return "anonymous"
    return hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class RateLimitTracker(StoredTracker):
    """429 with Retry-After once a key or an expert used its requests or tokens this minute."""

    options: RateLimitOptions
    observes = (ExpertCalled,)
    admits_last = False

    async def admit_key(self, caller: str) -> None:
        """Count one request of ``caller`` (see :func:`key_id`); raise 429 over the limit."""
        await self._admit(f"key:{caller}", self.options.per_key, f"API key {caller}")

    async def admit(self, expert: str, provider: str) -> None:
        limits = self.options.per_expert.get(expert)
        if limits is not None:
            await self._admit(f"expert:{expert}", limits, f"expert {expert!r}")

    async def _admit(self, scope: str, limits: Limits, who: str) -> None:
        if limits.requests_per_minute is None and limits.tokens_per_minute is None:
            return
        now = time.time()
        window = int(now // WINDOW_S)
        retry_after = {"Retry-After": str(max(1, math.ceil((window + 1) * WINDOW_S - now)))}
        key = f"{_LIMIT}{scope}:{window}"
        if limits.tokens_per_minute is not None:
            used = float((await self.store.get(key)).get("tokens", 0.0))
            if used >= limits.tokens_per_minute:
                raise RateLimited(
                    f"Rate limit reached for {who}: {int(used)} of "
                    f"{limits.tokens_per_minute} tokens per minute used. Retry after "
                    f"{retry_after['Retry-After']} s.",
                    code="rate_limit_exceeded",
                    headers=retry_after,
                )
        if limits.requests_per_minute is not None:
            counts = await self.store.update(key, incr={"requests": 1.0}, ttl_s=2 * WINDOW_S)
            if counts["requests"] > limits.requests_per_minute:
                raise RateLimited(
                    f"Rate limit reached for {who}: {limits.requests_per_minute} requests per "
                    f"minute. Retry after {retry_after['Retry-After']} s.",
                    code="rate_limit_exceeded",
                    headers=retry_after,
                )

    async def observe(self, event: Event) -> None:
        if not isinstance(event, ExpertCalled) or event.usage is None:
            return
        tokens = float(event.usage.total_tokens)
        if not tokens:
            return
        window = int(time.time() // WINDOW_S)
        scopes = []
        if self.options.per_expert.get(event.expert, Limits()).tokens_per_minute is not None:
            scopes.append(f"expert:{event.expert}")
        caller = CALLER_KEY.get()
        if caller is not None and self.options.per_key.tokens_per_minute is not None:
            scopes.append(f"key:{caller}")
        for scope in scopes:
            await self.store.update(
                f"{_LIMIT}{scope}:{window}", incr={"tokens": tokens}, ttl_s=2 * WINDOW_S
            )

    async def usage(self) -> dict[str, dict[str, Any]]:
        """What each key and expert used in the current minute."""
        window = int(time.time() // WINDOW_S)
        found = {}
        for key, counts in (await self.store.scan(_LIMIT)).items():
            scope, _, minute = key.removeprefix(_LIMIT).rpartition(":")
            if minute == str(window):
                found[scope] = {k: int(float(v)) for k, v in counts.items()}
        return found

    def snapshot(self) -> dict[str, Any]:
        return {
            "per_key": self.options.per_key.model_dump(),
            "per_expert": {k: v.model_dump() for k, v in self.options.per_expert.items()},
        }
