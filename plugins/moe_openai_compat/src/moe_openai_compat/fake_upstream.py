"""A fake OpenAI upstream that also embeds, for tests of ``POST /v1/embeddings``.

It is :class:`moe_openai_compat.testing.FakeOpenAI` (chat completions, tool calls included)
plus ``POST /v1/embeddings``: a unit vector per text, derived from the text's SHA-256 so that
equal texts get equal vectors; ``dimensions`` shortens them (and renormalises) up to the native
:data:`NATIVE_DIMENSIONS`, as OpenAI's text-embedding-3 models do, and is a 400 beyond; ``float``
or ``base64``; usage counts words. ``embedding_models`` limits which models embed (others get the
400 OpenAI gives a chat model asked to embed).
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from moe_openai_compat.testing import FakeOpenAI

NATIVE_DIMENSIONS = 16


def fake_vector(text: str, dimensions: int = NATIVE_DIMENSIONS) -> list[float]:
    """The unit vector the fake answers for ``text``."""
    raw = [byte - 127.5 for byte in hashlib.sha256(text.encode()).digest()[:dimensions]]
    norm = math.sqrt(sum(value * value for value in raw))
    return [value / norm for value in raw]


@dataclass
class FakeUpstream(FakeOpenAI):
    embedding_models: frozenset[str] | None = None  # None: every model embeds
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app

    def _invalid(self, message: str, param: str, code: str) -> web.Response:
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        return web.json_response({"error": error}, status=400)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.embedding_requests.append(body)
        behaviour = self.behaviour
        if behaviour.api_key is not None and (
            request.headers.get("Authorization") != f"Bearer {behaviour.api_key}"
        ):
            return self._error(401, "Incorrect API key provided.")
        if behaviour.status is not None:
            return self._error(behaviour.status, f"fake upstream error {behaviour.status}")
        model = body.get("model")
        if self.embedding_models is not None and model not in self.embedding_models:
            return self._invalid(
                f"This model does not support embeddings: {model}", "model", "model_not_supported"
            )
        dimensions = body.get("dimensions") or NATIVE_DIMENSIONS
        if not 1 <= dimensions <= NATIVE_DIMENSIONS:
            return self._invalid(
                f"This model makes at most {NATIVE_DIMENSIONS} dimensions",
                "dimensions",
                "invalid_value",
            )
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(texts):
            vector: Any = fake_vector(text, dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(text.split()) for text in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
