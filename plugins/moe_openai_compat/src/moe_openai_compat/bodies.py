"""Request bodies validated by pydantic, with problems reported as OpenAI does: a 400 whose
``param`` names the offending field the way OpenAI writes it (``input[2].content``)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from moe_core.errors import invalid_request

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], raw: bytes) -> M:
    """``raw`` JSON as ``model``, or the 400 for its first problem."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def validate(model: type[M], data: Any, *, at: str) -> M:
    """``data`` (a part of a body, found at ``at``) as ``model``, or the 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc, at=at) from None
