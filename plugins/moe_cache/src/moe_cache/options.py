"""The ``response-cache`` tracker's options: what is cached, where, for how long, how many."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from moe_core.plugins import Options
from moe_stores.redis import RedisLocation

ALL = "*"


class SemanticOptions(Options):
    """``semantic``: answer a differently worded question from the cache when its embedding is
    close enough to one already answered (same expert, same parameters, same conversation)."""

    embedder: str = Field(
        description="The expert that embeds questions (one that implements ``embed``)."
    )
    threshold: float = Field(
        0.95, gt=0, le=1, description="Cosine similarity at or above which a question matches."
    )
    max_candidates: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Questions remembered per expert, parameters and conversation; the oldest "
        "are forgotten first. Bounds the work of one lookup.",
    )


class CacheOptions(Options, RedisLocation):
    """Options of one ``response-cache`` tracker (nothing is cached unless ``experts`` names it)."""

    experts: list[str] | str = Field(
        description="The experts whose answers are cached, or '*' for every expert."
    )
    mode: Literal["exact", "semantic"] = Field(
        "exact", description="exact: the same request; semantic: also a similar last question."
    )
    store: Literal["memory", "sqlite", "redis"] = Field(
        "memory",
        description="memory: this process; sqlite: survives restarts; redis: shared by instances.",
    )
    ttl_s: float = Field(3600.0, gt=0, description="How long an answer is served.")
    max_entries: int = Field(
        1000, ge=1, description="Answers kept at most; the least recently used go first."
    )
    max_entry_bytes: int = Field(
        262_144, ge=1, description="Answers larger than this (serialised) are not kept."
    )
    sampled: bool = Field(
        False,
        description="Also cache sampled requests (temperature unset or above 0 and no seed), "
        "whose answers are meant to differ each time.",
    )
    path: str | None = Field(
        None,
        description="SQLite file; default: $MOE_DATA_DIR (else $XDG_DATA_HOME/moe, else "
        "~/.local/share/moe), then cache.sqlite3.",
    )
    prefix: str = Field("moe:cache:", description="Prefix of every key in Redis.")
    semantic: SemanticOptions | None = Field(
        None,
        validate_default=True,
        description="Required with mode: semantic (the embedder and the threshold).",
    )

    @field_validator("experts")
    @classmethod
    def _list_or_all(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str) and value != ALL:
            raise ValueError(f"a list of expert names or '{ALL}', got {value!r}")
        if isinstance(value, list) and not value:
            raise ValueError(f"empty: name the experts to cache, or '{ALL}' for all of them")
        return value

    @field_validator("semantic")
    @classmethod
    def _needed_in_semantic_mode(
        cls, value: SemanticOptions | None, info: ValidationInfo
    ) -> SemanticOptions | None:
        if value is None and info.data.get("mode") == "semantic":
            raise ValueError("required when mode is semantic (at least its embedder)")
        return value
