"""One error type per failure a caller can act on.

Every error carries what OpenAI's error envelope needs (HTTP status, ``type``, ``code``, ``param``)
so that any frontend can render it without knowing where it came from, and the official SDKs
raise their own exception classes for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError


class MoEError(Exception):
    """Base of every error the gateway reports to a caller."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def __str__(self) -> str:
        return self.message

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(MoEError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(MoEError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(MoEError):
    status = 403
    type = "permission_error"
    code = "admin_key_required"


class NotFound(MoEError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(MoEError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(MoEError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(MoEError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class UnsupportedMediaType(MoEError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class BudgetExceeded(MoEError):
    """A call would take the request past its ``moe.budget_usd``, so it was not started."""

    status = 402
    type = "budget_error"
    code = "budget_exceeded"


class NoEligibleExpert(MoEError):
    """Every expert was ruled out by what the request requires; the message says which
    requirement ruled out which expert, so the caller knows what to relax."""

    status = 400
    type = "invalid_request_error"
    code = "no_eligible_expert"


class RateLimited(MoEError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(MoEError):
    """An expert's backend answered with an error or something unreadable."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class ExpertFailed(UpstreamError):
    """An expert raised an unexpected exception; reported without a stack trace."""

    code = "expert_failed"


class ExpertUnavailable(MoEError):
    """An expert cannot take calls now (still loading, failed to load, circuit open)."""

    status = 503
    type = "service_unavailable"
    code = "expert_unavailable"


class ExpertTimeout(MoEError):
    status = 504
    type = "timeout_error"
    code = "expert_timeout"


CLIENT_CLOSED = 499
"""The status of work abandoned because its client went away (nginx's convention)."""


class CallCancelled(MoEError):
    """A call to an expert abandoned before it answered (a lost race, a client gone): status
    499, as for a client that closed the request, so no breaker counts it against the expert."""

    status = CLIENT_CLOSED
    code = "cancelled"

    def __init__(self, expert: str) -> None:
        super().__init__(f"call to {expert!r} cancelled before it answered")


class GateError(MoEError):
    """A gate returned a decision the gateway cannot run (a bug in the gate, not the request)."""

    code = "gate_error"


def upstream_error(
    where: str, status: int, body: bytes, headers: Mapping[str, str], *, credentials: str
) -> MoEError:
    """The gateway error for an HTTP error status from an expert's backend.

    The upstream's own message is kept; a refused credential is the gateway's configuration,
    not the caller's fault, so it is a 502 that names the setting to check (``credentials``),
    never a 401 to the caller; a 429 keeps its ``Retry-After`` so the caller knows when to
    come back. ``where`` names the expert, the upstream and the status; ``headers`` may be any
    mapping whose lookups ignore case or use lower-case names."""
    detail = upstream_detail(body)
    if status == 429:
        retry = headers.get("Retry-After") or headers.get("retry-after")
        return RateLimited(
            f"{where} is rate limited: {detail}",
            headers={"Retry-After": retry} if retry else None,
        )
    if status in (401, 403):
        return UpstreamError(
            f"{where} refused the gateway's credentials (check {credentials}): {detail}"
        )
    if status in (400, 404, 409, 413, 422):
        return InvalidRequest(f"{where} rejected the request: {detail}", code="upstream_rejected")
    return UpstreamError(f"{where} failed: {detail}")


def upstream_detail(body: bytes) -> str:
    """The readable part of an upstream's error body: OpenAI's ``error.message``, a plain
    ``error`` and/or ``message`` string, else the start of the body as text."""
    try:
        payload = orjson.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        message = payload.get("message")
        if error and message:
            return f"{error}: {message}"
        if error or message:
            return str(error or message)
    return body[:500].decode("utf-8", "replace")


def invalid_request(exc: ValidationError, *, at: str = "") -> InvalidRequest:
    """The 400 for the first problem pydantic found in a request body, phrased as OpenAI
    phrases it, with the offending field in ``param`` as OpenAI writes it
    (``messages[2].content``); ``at`` is where the validated part sits in the body."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return InvalidRequest(
            f"We could not parse the JSON body of your request: {error['msg']}",
            code="invalid_json",
        )
    param = param_path(error["loc"], at)
    if param is None and error["type"] == "model_type":
        return InvalidRequest("The request body must be a JSON object", code="invalid_json")
    if error["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    if error["type"] == "extra_forbidden":
        return InvalidRequest(
            f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
        )
    message = error["msg"].removeprefix("Value error, ")
    if param is None:  # the body as a whole (a validator comparing two fields)
        return InvalidRequest(f"Invalid request: {message}.", code="invalid_value")
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return InvalidRequest(
        f"Invalid value for '{param}': {message} (got {shown}).",
        param=param,
        code="invalid_value",
    )


def param_path(location: Sequence[str | int], at: str = "") -> str | None:
    """``("input", 2, "content")`` as ``input[2].content``, below ``at`` when given."""
    path = at
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


class ConfigError(Exception):
    """The configuration is invalid; the message names the exact key path."""


class PluginError(Exception):
    """A plugin failed to import, registered a duplicate kind, or a required one is missing."""
