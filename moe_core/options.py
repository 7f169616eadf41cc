"""The base of every kind's options model, and option types many kinds share."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Options(BaseModel):
    """Base for a kind's options: unknown keys are errors, so a typo in config never goes unseen."""

    model_config = ConfigDict(extra="forbid")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


BaseURL = Annotated[str, AfterValidator(_http_url)]
"""An option holding an API root: must be http(s) with a host; kept without a trailing slash."""


class CombinerOptions(Options):
    """What every combiner takes: the gateway enforces ``deadline_s`` around the whole answer,
    so no combiner has to."""

    deadline_s: float | None = Field(
        None, gt=0, description="Limit for the whole answer, every expert call included"
    )


StreamFailover = Annotated[
    Literal["error", "continue"],
    Field(
        description=(
            "When a stream dies after text reached the client: 'error' ends it with an error "
            "event; 'continue' asks the next expert to carry on from the text already sent "
            "(never after tool calls, nor for JSON output or several choices)."
        )
    ),
]
"""The ``stream_failover`` option of combiners that stream one expert's answer with others in
reserve (``single``, ``first-success``); see :meth:`moe_core.run.Run.continuing`."""
