"""Request bodies validated by pydantic, with problems reported as OpenAI does: a 400 whose
``param`` names the offending field the way OpenAI writes it (``input[2].content``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from moe_core import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], raw: bytes) -> M:
    """``raw`` JSON as ``model``, or the 400 for its first problem."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc) from None


def validate(model: type[M], data: Any, *, at: str) -> M:
    """``data`` (a part of a body, found at ``at``) as ``model``, or the 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, at=at) from None


def param_path(location: Sequence[str | int], at: str = "") -> str | None:
    """``("input", 2, "content")`` as ``input[2].content``, below ``at`` when given."""
    path = at
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def invalid(exc: ValidationError, *, at: str = "") -> InvalidRequest:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return InvalidRequest(
            f"We could not parse the JSON body of your request: {error['msg']}",
            code="invalid_json",
        )
    param = param_path(error["loc"], at)
    if not param and error["type"] == "model_type":
        return InvalidRequest("The request body must be a JSON object", code="invalid_json")
    if error["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    if error["type"] == "extra_forbidden":
        return InvalidRequest(
            f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
        )
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return InvalidRequest(
        f"Invalid value for '{param}': {error['msg']} (got {shown}).",
        param=param,
        code="invalid_value",
    )
