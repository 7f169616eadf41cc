"""The ``pollinations`` frontend: ``GET /{prompt}``, the simplest way to ask the gateway.

``GET /What%20is%20a%20star`` answers ``text/plain`` with ``X-MoE-Models``, ``X-MoE-Strategy``
and ``X-MoE-Latency`` headers; ``?format=image`` answers the picture itself (``image/jpeg``) and
``?format=audio`` the prompt's spoken answer (``audio/mpeg``, ``&voice=`` to choose the voice).
Query parameters ``model``, ``seed``, ``temperature``, ``top_p``, ``max_tokens``, ``system``,
``voice`` and ``width``/``height`` are passed on.

The route matches any path, so it is not a route at all: it is a middleware that answers only
requests no other route matched (and never paths under ``/v1/``, ``/-/`` or ``/openai``), so
whatever the order frontends are mounted in, it cannot shadow another frontend's routes. Because
it turns any unknown URL into a generation, it is mounted only where the configuration asks for
it (``server.frontends.pollinations.enabled: true``); elsewhere an unknown URL is a 404.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from pydantic import Field

from moe_core import MOE_KEY, Frontend, InvalidRequest, Options, UpstreamError
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.server import Handler

_RESERVED_PREFIXES = ("/v1/", "/-/", "/openai/")
_RESERVED = frozenset({"/", "/v1", "/-", "/openai", "/favicon.ico", "/robots.txt"})
_FLOATS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_INTS = ("seed", "max_tokens", "width", "height")


class PromptFrontendOptions(Options):
    max_prompt_chars: int = Field(8000, ge=1, description="Longest prompt accepted in a path")


class PromptFrontend(Frontend):
    """``GET /{prompt}``: plain text (or ``?format=image``) answers with MoE headers."""

    options: PromptFrontendOptions
    mounted_by_default = False

    def setup(self, app: web.Application) -> None:
        limit = self.options.max_prompt_chars

        @web.middleware
        async def prompt_route(request: web.Request, handler: Handler) -> web.StreamResponse:
            if _is_prompt(request):
                return await answer_prompt(request, limit)
            return await handler(request)

        app.middlewares.append(prompt_route)


def _is_prompt(request: web.Request) -> bool:
    """A GET that no route matched, on a path that is not reserved for an API."""
    if request.method != "GET":
        return False
    exception = getattr(request.match_info, "http_exception", None)
    if exception is None or exception.status != 404:
        return False
    path = request.path
    return path not in _RESERVED and not path.startswith(_RESERVED_PREFIXES)


def _body(prompt: str, query: Any, *, speech: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": []}
    if query.get("system"):
        body["messages"].append({"role": "system", "content": query["system"]})
    body["messages"].append({"role": "user", "content": prompt})
    if query.get("model"):
        body["model"] = query["model"]
    for key in (*_FLOATS, *_INTS):
        if key in query:
            try:
                body[key] = int(query[key]) if key in _INTS else float(query[key])
            except ValueError:
                kind = "an integer" if key in _INTS else "a number"
                raise InvalidRequest(f"query parameter {key} must be {kind}", param=key) from None
    if speech and query.get("voice"):
        body["audio"] = {"voice": query["voice"], "format": "mp3"}
    return body


async def answer_prompt(request: web.Request, limit: int) -> web.StreamResponse:
    moe = request.app[MOE_KEY]
    prompt = request.match_info.get("prompt") or request.path[1:]
    prompt = prompt.strip()
    if not prompt:
        raise InvalidRequest("the path must hold a prompt: GET /{prompt}", param="prompt")
    if len(prompt) > limit:
        raise InvalidRequest(f"the prompt is longer than {limit} characters", param="prompt")
    wanted = request.query.get("format", "text")
    if wanted not in ("text", "image", "audio"):
        raise InvalidRequest("format must be text, image or audio", param="format")
    body = _body(prompt, request.query, speech=wanted == "audio")
    if wanted != "text":
        body["moe"] = {"task_type": "image" if wanted == "image" else "speech"}
    response = await moe.complete(moe.parse(body), request_id=request[REQUEST_ID_KEY])
    metadata = response.metadata
    headers = {
        "X-MoE-Models": ",".join(metadata.experts_used),
        "X-MoE-Strategy": metadata.strategy,
        "X-MoE-Latency": f"{metadata.total_latency_ms / 1000:.3f}",
    }
    if wanted != "text":
        media = response.result.images if wanted == "image" else response.result.audio
        if not media:
            notes = "; ".join(metadata.notes) or f"the answer holds no {wanted}"
            raise UpstreamError(f"no {wanted} was generated: {notes}", code=f"no_{wanted}")
        return web.Response(
            body=base64.b64decode(media[0].data), content_type=media[0].format, headers=headers
        )
    return web.Response(text=response.result.content, content_type="text/plain", headers=headers)
