"""``GET /config/models``, ``POST /config/model`` and ``DELETE /config/model/{name}``.

Changes need the admin key, are written to the overlay (see :mod:`moe_runtime_config.overlay`)
and take effect through a hot reload, so the next request already sees them; a change the new
configuration cannot take (a bad URL, an expert a gate still needs) is a 400 and leaves both
the overlay and the running gateway as they were.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import structlog
from aiohttp import web

from moe_core import MOE_KEY, ConfigError, Frontend, InvalidRequest, MoE, NotFound
from moe_core.http import json_response, read_json_body
from moe_core.reload import reload
from moe_core.server import require_admin
from moe_core.workers import tell_supervisor_to_reload
from moe_runtime_config.overlay import NAME, Overlay

log = structlog.get_logger(__name__)
_SECRET = re.compile(r"key|secret|token|password", re.IGNORECASE)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class RuntimeConfigFrontend(Frontend):
    """Experts added, changed and removed over HTTP (seed 004's model configuration API)."""

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/config/models", list_models)
        app.router.add_post("/config/model", put_model)
        app.router.add_delete("/config/model/{name}", delete_model)


async def list_models(request: web.Request) -> web.Response:
    """Every expert with its options, secrets left out (``api_key_set`` says if one is)."""
    require_admin(request)
    moe = request.app[MOE_KEY]
    overlay = _overlay(moe, required=False)
    added = set((overlay.read()[0].get("experts") or {}) if overlay else ())
    data = []
    for name, spec in moe.config.experts.items():
        options = {k: v for k, v in spec.options().items() if not _SECRET.search(k)}
        data.append(
            {
                "id": name,
                "object": "model",
                "kind": spec.kind,
                "options": options,
                "fallbacks": spec.fallbacks,
                "api_key_set": bool(spec.options().get("api_key_env")),
                "state": moe.experts[name].state,
                "from": "runtime" if name in added else "config",
            }
        )
    return json_response({"object": "list", "data": data})


async def put_model(request: web.Request) -> web.Response:
    """Add an OpenAI-compatible expert, or change one's ``base_url``, ``model`` or key."""
    require_admin(request)
    moe = request.app[MOE_KEY]
    fields = await _fields(request)
    name = str(fields.get("name") or fields.get("model_name") or "")
    if not NAME.match(name):
        raise InvalidRequest(
            "'name' must be 1 to 64 letters, digits, '.', '_' or '-'", param="name"
        )
    overlay = _overlay(moe)
    current, secrets = overlay.read()
    experts = dict(current.get("experts") or {})
    base = experts.get(name)
    if base is None and name in moe.config.experts:
        spec = moe.config.experts[name]
        base = {"kind": spec.kind, **spec.options(), "fallbacks": spec.fallbacks}
    if base is None and not fields.get("base_url"):
        raise InvalidRequest("'base_url' is required for a new expert", param="base_url")
    expert = dict(base or {"kind": "openai", "model": name})
    if expert.get("kind") != "openai":
        raise InvalidRequest(f"expert {name!r} is not an OpenAI-compatible expert", param="name")
    for field in ("base_url", "model"):
        if fields.get(field):
            expert[field] = str(fields[field])
    new_secrets = dict(secrets)
    if fields.get("api_key"):
        new_secrets[name] = str(fields["api_key"])
    if name in new_secrets:  # the overlay's key, given to the expert when it is loaded
        expert.pop("api_key_env", None)
    experts[name] = expert
    removed = [other for other in current.get("removed", []) if other != name]
    report = await _apply(moe, overlay, {"experts": experts, "removed": removed}, new_secrets)
    log.info("runtime_config.expert_set", expert=name, key_changed=bool(fields.get("api_key")))
    return json_response({"id": name, "object": "model", "reloaded": report})


async def delete_model(request: web.Request) -> web.Response:
    require_admin(request)
    moe = request.app[MOE_KEY]
    name = request.match_info["name"]
    if name not in moe.config.experts:
        raise NotFound(f"No expert {name!r}", code="model_not_found")
    overlay = _overlay(moe)
    current, secrets = overlay.read()
    experts = dict(current.get("experts") or {})
    removed = list(current.get("removed", []))
    experts.pop(name, None)
    if name not in removed:
        removed.append(name)
    secrets = {other: key for other, key in secrets.items() if other != name}
    report = await _apply(moe, overlay, {"experts": experts, "removed": removed}, secrets)
    log.info("runtime_config.expert_removed", expert=name)
    return json_response({"id": name, "object": "model", "deleted": True, "reloaded": report})


async def _apply(
    moe: MoE, overlay: Overlay, new: dict[str, Any], secrets: dict[str, str]
) -> dict[str, Any]:
    """Write the overlay and reload; on failure put the old overlay back and say why."""
    old = overlay.read()
    overlay.write(new, secrets)
    try:
        report = await reload(moe)
    except ConfigError as exc:
        overlay.write(*old)
        raise InvalidRequest(f"not applied: {exc}", code="invalid_config") from None
    tell_supervisor_to_reload()
    return report


def _overlay(moe: MoE, *, required: bool = True) -> Overlay:
    overlay = Overlay.beside(moe.config.source)
    if overlay is None and required:
        raise InvalidRequest(
            "this gateway was configured from a dict, so there is no file to keep changes beside",
            code="no_config_file",
        )
    return overlay  # type: ignore[return-value]


async def _fields(request: web.Request) -> dict[str, Any]:
    """The request's fields, sent as a form (as seed 004's clients do) or as JSON."""
    if request.content_type in FORM_TYPES:
        form = await request.post()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    body = await read_json_body(request)
    try:
        fields = orjson.loads(body)
    except ValueError:
        raise InvalidRequest("The body is not valid JSON", code="invalid_json") from None
    if not isinstance(fields, dict):
        raise InvalidRequest("The body must be a JSON object", code="invalid_json")
    return fields
