"""Anthropic's error shape, both ways.

Anthropic clients read ``{"type": "error", "error": {"type", "message"}}`` and pick their
exception class by HTTP status, so the gateway's errors keep their status and get the type
Anthropic documents for it. An Anthropic upstream's errors become the core's error classes, so
breakers, fallbacks and trackers treat them exactly like any other expert's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moe_core import ExpertUnavailable, MoEError, UpstreamError
from moe_core.errors import upstream_detail, upstream_error

# Anthropic's documented error types by HTTP status; any other 4xx is an invalid request and any
# other 5xx an API error, as Anthropic's own documentation says.
_TYPES = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

OVERLOADED = 529
"""Anthropic's status for "temporarily overloaded": the upstream is up but refuses work."""


def error_type(status: int) -> str:
    """The Anthropic error ``type`` for an HTTP status."""
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def envelope(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error body for a status and message."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type(status), "message": message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_body(error: MoEError, request_id: str | None = None) -> dict[str, Any]:
    """A gateway error in Anthropic's shape; the parameter at fault leads the message, as in
    Anthropic's own messages (``max_tokens: Field required``)."""
    message = error.message
    if error.param and not message.startswith(f"{error.param}:"):
        message = f"{error.param}: {message}"
    return envelope(error.status, message, request_id)


def from_upstream(
    where: str, status: int, body: bytes, headers: Mapping[str, str], *, model_option: str
) -> MoEError:
    """The gateway error for an error status from an Anthropic upstream.

    As for any upstream, the caller's own mistakes stay 4xx (they must not open a breaker) and
    the gateway's credentials are never blamed on the caller. Two statuses differ from an
    OpenAI-compatible server: 529 means overloaded (a 503 here, so fallbacks answer and
    ``Retry-After`` is kept), and 404 from ``/v1/messages`` means the configured model does not
    exist, which is the gateway's configuration, not the caller's request.
    """
    if status == OVERLOADED:
        retry = headers.get("retry-after") or headers.get("Retry-After")
        return ExpertUnavailable(
            f"{where} is overloaded: {upstream_detail(body)}",
            headers={"Retry-After": retry} if retry else None,
        )
    if status == 404:
        return UpstreamError(
            f"{where} does not know the model (check {model_option}): {upstream_detail(body)}"
        )
    return upstream_error(where, status, body, headers, credentials="api_key_env")
