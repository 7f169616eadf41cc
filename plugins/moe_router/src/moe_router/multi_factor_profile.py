"""What the ``multi-factor`` gate knows about each expert, computed once per card."""

from __future__ import annotations

from dataclasses import dataclass

from moe_core.models import ExpertCard


@dataclass(slots=True, eq=False)
class Profile:
    """What the gate needs of a card, computed once per card."""

    name: str
    card: ExpertCard
    provider: str
    abilities: frozenset[str]
    quality: float
    quality_points: float
    per_in: float
    per_out: float
    latency_ms: float | None
    enabled: bool
    max_output: int | None
    window: int | None
    preferences: dict[str, float]


@dataclass(slots=True, eq=False)
class Candidate:
    """An expert that passed the filters, with its expected cost and score parts."""

    profile: Profile
    expected_usd: float
    parts: tuple[float, ...] = ()
    total: float = 0.0


def profile_of(name: str, card: ExpertCard, quality_baseline: float) -> Profile:
    """What the gate needs of one card, computed once: abilities as a set, costs per token,
    quality as points above ``quality_baseline`` (a card without quality counts as 0.5)."""
    abilities = set(card.capabilities) | set(card.modalities_in)
    for flag, ability in (
        (card.supports_streaming, "streaming"),
        (card.supports_tools, "tools"),
        (card.supports_vision or "image" in card.modalities_in, "vision"),
        (card.supports_json, "json"),
    ):
        if flag:
            abilities.add(ability)
    quality = 0.5 if card.quality is None else card.quality
    return Profile(
        name=name,
        card=card,
        provider=card.provider,
        abilities=frozenset(abilities),
        quality=quality,
        quality_points=max(0.0, (quality - quality_baseline) / (1 - quality_baseline)),
        per_in=card.cost_per_1k_input / 1000,
        per_out=card.cost_per_1k_output / 1000,
        latency_ms=card.latency_p95_ms if card.latency_p95_ms is not None else card.latency_p50_ms,
        enabled=card.enabled,
        max_output=card.max_output_tokens,
        window=card.context_window,
        preferences=card.task_preferences,
    )
