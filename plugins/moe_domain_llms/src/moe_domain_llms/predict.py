"""``POST /predict``: the domain-routing API as its first users know it, made sane.

Body ``{"query": "..."}`` (or ``?query=...``, the original form), answer
``{"expert", "response", "confidence", "gate", "latency_ms"}``. It is the chat pipeline with
``model: auto``, so the configured gate decides, and bad queries get a 4xx that says why.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import Field

from moe_core import MOE_KEY, Frontend, InvalidRequest, Options, PayloadTooLarge
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.http import json_response, read_json_body


class PredictOptions(Options):
    max_query_chars: int = Field(4000, ge=1, description="Longer queries get a 413")
    max_tokens: int = Field(200, ge=1, description="Answer length when the body sets none")


class PredictFrontend(Frontend):
    """``POST /predict``: route one query to a domain expert and answer it."""

    options: PredictOptions

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/predict", self.predict)
        app.router.add_post("/predict/", self.predict)

    async def predict(self, request: web.Request) -> web.Response:
        query, max_tokens = await self._query(request)
        moe = request.app[MOE_KEY]
        response = await moe.complete(
            {
                "model": "auto",
                "messages": [{"role": "user", "content": query}],
                "max_tokens": max_tokens,
            },
            request_id=request[REQUEST_ID_KEY],
        )
        metadata = response.metadata
        return json_response(
            {
                "expert": response.model,
                "response": response.result.content,
                "confidence": metadata.confidence,
                "gate": metadata.gate,
                "latency_ms": metadata.total_latency_ms,
                "rationale": metadata.rationale,
            }
        )

    async def _query(self, request: web.Request) -> tuple[str, int]:
        body: dict[str, Any] = {}
        if "query" in request.query:
            body = {"query": request.query["query"]}
        else:
            try:
                body = orjson.loads(await read_json_body(request))
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest(
                    f"The body is not valid JSON: {exc}", code="invalid_json"
                ) from None
            if not isinstance(body, dict):
                raise InvalidRequest('The body must be a JSON object: {"query": "..."}')
        query = body.get("query")
        if query is None:
            raise InvalidRequest("Missing required parameter: 'query'.", param="query")
        if not isinstance(query, str):
            raise InvalidRequest(
                f"'query' must be a string, got {type(query).__name__}", param="query"
            )
        if not query.strip():
            raise InvalidRequest("'query' is empty", param="query")
        if len(query) > self.options.max_query_chars:
            raise PayloadTooLarge(
                f"'query' has {len(query)} characters; the limit is {self.options.max_query_chars}",
                param="query",
            )
        max_tokens = body.get("max_tokens", self.options.max_tokens)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InvalidRequest("'max_tokens' must be a positive integer", param="max_tokens")
        return query, max_tokens
