"""The Pollinations model listing: parsed into :class:`ModelInfo`, cached on disk, turned into
expert cards and configuration.

Pollinations publishes its models at ``{text_base}/models`` (objects with name, description,
provider, tier, modalities, vision, audio, voices, reasoning, tools...) and
``{image_base}/models`` (model names). Building experts must not need the network, so the
listing is read from a disk cache when it is fresh, else the stale cache, else the snapshot
bundled with this package; ``moe pollinations sync`` (or an expert's ``start`` when the cache is
stale) refreshes the cache.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import structlog

from moe_core import ExpertCard

log = structlog.get_logger(__name__)

CACHE_FILE = "models.json"
SNAPSHOT = "data/models_snapshot.json"
CACHE_ENV = "MOE_CACHE_DIR"

# What the image listing does not say but routing needs: which models are fast, which render
# text and detail well, which take an input image. Unknown image models get the flux profile.
_IMAGE_TRAITS: dict[str, dict[str, Any]] = {
    "flux": {"speed": "fast", "edit": False, "detail": False, "p50_ms": 6_000, "timeout_s": 60},
    "turbo": {"speed": "fast", "edit": False, "detail": False, "p50_ms": 4_000, "timeout_s": 60},
    "kontext": {"speed": "fast", "edit": True, "detail": False, "p50_ms": 15_000, "timeout_s": 120},
    "gptimage": {
        "speed": "slow",
        "edit": True,
        "detail": True,
        "p50_ms": 180_000,
        "timeout_s": 360,
    },
}
_DEFAULT_IMAGE_TRAITS = _IMAGE_TRAITS["flux"]
TEXT_TIMEOUT_S = 120.0
REASONING_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ModelInfo:
    """One Pollinations model as the listing describes it."""

    name: str
    kind: Literal["text", "image"]
    description: str = ""
    provider: str = ""
    tier: str = "anonymous"
    community: bool = False
    aliases: tuple[str, ...] = ()
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    tools: bool = False
    vision: bool = False
    audio: bool = False
    reasoning: bool = False
    uncensored: bool = False
    max_input_chars: int | None = None
    voices: tuple[str, ...] = ()
    traits: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def text_model(cls, raw: dict[str, Any]) -> ModelInfo:
        aliases = raw.get("aliases") or ()
        return cls(
            name=str(raw["name"]),
            kind="text",
            description=str(raw.get("description") or ""),
            provider=str(raw.get("provider") or ""),
            tier=str(raw.get("tier") or "anonymous"),
            community=bool(raw.get("community")),
            aliases=(aliases,) if isinstance(aliases, str) else tuple(aliases),
            input_modalities=tuple(raw.get("input_modalities") or ("text",)),
            output_modalities=tuple(raw.get("output_modalities") or ("text",)),
            tools=bool(raw.get("tools")),
            vision=bool(raw.get("vision")),
            audio=bool(raw.get("audio")),
            reasoning=bool(raw.get("reasoning")),
            uncensored=bool(raw.get("uncensored")),
            max_input_chars=raw.get("maxInputChars"),
            voices=tuple(raw.get("voices") or ()),
        )

    @classmethod
    def image_model(cls, raw: str | dict[str, Any]) -> ModelInfo:
        name = raw if isinstance(raw, str) else str(raw["name"])
        traits = _IMAGE_TRAITS.get(name, _DEFAULT_IMAGE_TRAITS)
        description = "" if isinstance(raw, str) else str(raw.get("description") or "")
        return cls(
            name=name,
            kind="image",
            description=description or f"Pollinations image model {name}",
            provider="pollinations",
            input_modalities=("text", "image") if traits["edit"] else ("text",),
            output_modalities=("image",),
            vision=traits["edit"],
            traits=dict(traits),
        )

    @property
    def speaks(self) -> bool:
        """Whether the model can answer with audio (text-to-speech)."""
        return "audio" in self.output_modalities

    @property
    def default_timeout_s(self) -> float:
        """A limit that suits the model: a minute for fast images, minutes for the slow one."""
        if self.kind == "image":
            return float(self.traits["timeout_s"])
        return REASONING_TIMEOUT_S if self.reasoning else TEXT_TIMEOUT_S

    def card(self) -> ExpertCard:
        """The expert card the listing's fields imply."""
        capabilities: list[str] = []
        if self.kind == "image":
            capabilities.append("image-generation")
            if self.traits["edit"]:
                capabilities.append("image-edit")
            if self.traits["detail"]:
                capabilities.append("text-rendering")
            capabilities.append(self.traits["speed"])
            return ExpertCard(
                provider="pollinations",
                description=self.description,
                modalities_in=list(self.input_modalities),
                modalities_out=["image"],
                capabilities=capabilities,
                latency_p50_ms=float(self.traits["p50_ms"]),
                supports_streaming=False,
            )
        capabilities.append("chat")
        for flag in ("tools", "vision", "reasoning", "uncensored", "community"):
            if getattr(self, flag):
                capabilities.append(flag)
        if self.speaks:
            capabilities.append("speech")
            capabilities.extend(f"voice:{voice}" for voice in self.voices)
        capabilities.append(f"tier:{self.tier}")
        return ExpertCard(
            provider="pollinations",
            description=self.description,
            modalities_in=list(self.input_modalities),
            modalities_out=list(self.output_modalities),
            capabilities=capabilities,
            # The listing limits characters; four characters a token is the usual estimate.
            context_window=self.max_input_chars // 4 if self.max_input_chars else None,
        )


@dataclass(frozen=True)
class Listing:
    """Every model the listing returned, and where it came from."""

    text: tuple[ModelInfo, ...]
    image: tuple[ModelInfo, ...]
    source: str
    fetched_at: float | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any], source: str) -> Listing:
        """Build from ``{"text": [...], "image": [...]}``; ``ValueError`` if malformed."""
        try:
            text = tuple(ModelInfo.text_model(item) for item in raw["text"])
            image = tuple(ModelInfo.image_model(item) for item in raw["image"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed Pollinations model listing ({source}): {exc}") from None
        return cls(text=text, image=image, source=source, fetched_at=raw.get("fetched_at"))

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        return self.text + self.image

    def names(self) -> list[str]:
        return [model.name for model in self.models]

    def get(self, name: str) -> ModelInfo:
        for model in self.models:
            if model.name == name or name in model.aliases:
                return model
        raise KeyError(name)


def snapshot() -> Listing:
    """The listing bundled with this package (used when nothing fresher is available)."""
    raw = json.loads(resources.files("moe_pollinations").joinpath(SNAPSHOT).read_text("utf-8"))
    return Listing.parse(raw, "bundled snapshot")


def default_cache_dir() -> Path:
    """``$MOE_CACHE_DIR``, else ``$XDG_CACHE_HOME/moe``, else ``~/.cache/moe``: the gateway's
    one cache root, read when asked rather than at import so a changed environment counts."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "moe"


def cache_path(cache_dir: str | os.PathLike[str] | None) -> Path:
    """Where the listing is cached: ``<cache_dir>/models.json``, by default
    ``<cache root>/pollinations/models.json`` (:func:`default_cache_dir`)."""
    if cache_dir:
        return Path(cache_dir).expanduser() / CACHE_FILE
    return default_cache_dir() / "pollinations" / CACHE_FILE


def read_cache(path: Path) -> Listing | None:
    """The cached listing, or ``None`` if there is none or it is unreadable (logged)."""
    try:
        raw = json.loads(path.read_text("utf-8"))
        return Listing.parse(raw, f"cache {path}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("pollinations.cache_unreadable", path=str(path), error=str(exc))
        return None


def write_cache(path: Path, text: list[Any], image: list[Any]) -> Listing:
    """Validate a freshly fetched listing and write it to the cache atomically."""
    raw = {"fetched_at": time.time(), "text": text, "image": image}
    listing = Listing.parse(raw, f"cache {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(raw), "utf-8")
    temporary.replace(path)
    return listing


def is_fresh(listing: Listing | None, ttl_s: float) -> bool:
    return (
        listing is not None
        and listing.fetched_at is not None
        and time.time() - listing.fetched_at < ttl_s
    )


def load_listing(path: Path) -> Listing:
    """The cached listing if there is one (fresh or stale), else the bundled snapshot."""
    return read_cache(path) or snapshot()


def experts_config(listing: Listing, **options: Any) -> dict[str, dict[str, Any]]:
    """A config ``experts:`` section with one ``pollinations`` expert per listed model, named
    after the model; ``options`` (base URLs, cache_dir...) go into every one.

    This is how "every Pollinations model" is configured: the section is generated from the
    listing (``moe pollinations sync --print-config``) rather than expanded at startup, so the
    configuration always says exactly which experts exist.
    """
    return {model.name: {"kind": "pollinations", **options} for model in listing.models}
