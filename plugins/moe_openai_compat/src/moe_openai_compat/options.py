"""``server.frontends.openai``: the options of the OpenAI frontend.

Embeddings and the Responses API have limits a gateway operator tunes: which expert ``model:
auto`` embeds with, how much one embeddings request may ask for, and how many stored responses
(for ``previous_response_id``) the gateway keeps, for how long, in how much memory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from moe_core import Options


class OpenAIFrontendOptions(Options):
    embeddings_model: str | None = Field(
        None,
        description="The expert `model: auto` embeds with; default: the first expert whose "
        "card lists the `embed` capability",
    )
    embeddings_max_inputs: int = Field(
        2048, ge=1, description="Most texts in one embeddings request (OpenAI's limit)"
    )
    embeddings_max_chars: int = Field(
        1_000_000, ge=1, description="Most characters of all texts of one embeddings request"
    )
    responses_store: Literal["auto", "memory", "sqlite"] = Field(
        "auto",
        description="Where stored responses live: memory (this process), sqlite (a file every "
        "worker shares, kept across restarts); auto: memory, or sqlite under --workers",
    )
    responses_store_path: str | None = Field(
        None, description="The sqlite file; default: responses.sqlite3 in $MOE_DATA_DIR"
    )
    responses_store_max: int = Field(
        1000, ge=0, description="Stored responses kept at most, oldest dropped first (0: none)"
    )
    responses_store_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Bytes all stored responses may take together"
    )
    responses_ttl_s: float = Field(
        24 * 3600.0, gt=0, description="How long a stored response can be read or continued"
    )
