"""``POST /v1/embeddings``: OpenAI's embeddings wire format over every expert that can embed.

Experts come from plugins that cannot import this one, so "can embed" is a duck-typed protocol,
:class:`~moe_core.embedding.Embedder`, checked with ``isinstance``: the ``sentence-embedding``
expert, the ``byt5`` and ``longformer`` experts (their ``embed`` task) and the ``openai`` expert
(the upstream's own ``/embeddings``, passed through) implement it. ``model: auto`` embeds with
the expert the frontend's ``embeddings_model`` option names, else the first expert whose card
lists the ``embed`` capability. Each call goes through :func:`moe_core.embedding.embed`, guarded
like a chat call (the expert must be ready, circuit breakers and rate limits are asked, its
``timeout_s`` applies) and reported to trackers with task type ``embed``, so usage and cost are
counted.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from moe_core import (
    MOE_KEY,
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    MoE,
    UpstreamError,
)
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.embedding import EMBED, Embedder, embed
from moe_core.http import json_response, read_json_body
from moe_core.pool import ExpertSlot
from moe_openai_compat.bodies import parse_body
from moe_openai_compat.options import OpenAIFrontendOptions


class EmbeddingsRequest(BaseModel):
    """OpenAI's ``/v1/embeddings`` body; unknown parameters are a 400 naming them."""

    model_config = ConfigDict(extra="forbid")

    model: str
    # A string or a list of strings; checked by texts_of, whose messages say what is wrong.
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


def texts_of(value: Any, *, max_inputs: int, max_chars: int) -> list[str]:
    """The texts of an ``input``: one string or a non-empty list of them, within the limits."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise InvalidRequest(
            "'input' must be a non-empty string or a non-empty array of strings",
            param="input",
            code="invalid_value",
        )
    if len(texts) > max_inputs:
        raise InvalidRequest(
            f"'input' has {len(texts)} items; at most {max_inputs} are allowed per request",
            param="input",
            code="invalid_value",
        )
    total = 0
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            hint = "; token arrays are not accepted, send text" if isinstance(text, int) else ""
            raise InvalidRequest(
                f"'input[{index}]' must be a string, got {type(text).__name__}{hint}",
                param="input",
                code="invalid_value",
            )
        if not text:
            raise InvalidRequest(
                f"'input[{index}]' is an empty string; every input must have text",
                param="input",
                code="invalid_value",
            )
        total += len(text)
    if total > max_chars:
        raise InvalidRequest(
            f"'input' has {total} characters in all; at most {max_chars} are allowed per request",
            param="input",
            code="invalid_value",
        )
    return texts


def default_embedder(moe: MoE, configured: str | None) -> str | None:
    """The expert ``model: auto`` embeds with: the configured one, else the first expert whose
    card lists the ``embed`` capability and that can embed."""
    if configured is not None:
        return configured
    for name, slot in moe.experts.items():
        if EMBED in slot.card.capabilities and isinstance(slot.expert, Embedder):
            return name
    return None


def check_embeddings_model(moe: MoE, configured: str | None) -> None:
    """Refuse at startup an ``embeddings_model`` that is not an expert that can embed."""
    if configured is None:
        return
    where = "server.frontends.openai.embeddings_model"
    if configured not in moe.experts:
        raise ConfigError(
            f"{where}: no expert is named {configured!r}; experts: {', '.join(moe.experts)}"
        )
    if not isinstance(moe.experts[configured].expert, Embedder):
        raise ConfigError(f"{where}: expert {configured!r} cannot make embeddings")


def embedder_slot(moe: MoE, model: str, configured: str | None) -> ExpertSlot:
    """The expert a request's ``model`` embeds with, or the 4xx saying why there is none."""
    name = default_embedder(moe, configured) if model in moe.auto_names else model
    if name is None:
        raise InvalidRequest(
            f"no expert embeds for model {model!r}: name one that does, or give an expert's "
            "card the 'embed' capability (or set server.frontends.openai.embeddings_model)",
            param="model",
        )
    if name not in moe.experts:
        raise ModelNotFound(
            f"The model {name!r} does not exist; available: {', '.join(moe.model_ids())}",
            param="model",
        )
    slot = moe.experts[name]
    if not isinstance(slot.expert, Embedder):
        able = [other for other, s in moe.experts.items() if isinstance(s.expert, Embedder)]
        raise InvalidRequest(
            f"expert {name!r} does not make embeddings; experts that do: "
            f"{', '.join(able) or 'none'}",
            param="model",
            code="model_not_supported",
        )
    return slot


def encode_vector(vector: Sequence[float], encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    if encoding_format == "float":
        return vector if isinstance(vector, list) else list(vector)
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def embeddings_body(
    model: str, vectors: list[list[float]], tokens: int, encoding_format: str
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode_vector(v, encoding_format)}
            for index, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# -- the upstream's own /embeddings (the ``openai`` expert's ``embed``) ---------------------------

UPSTREAM_PATH = "/embeddings"


def upstream_request(model: str, texts: list[str], dimensions: int | None) -> bytes:
    """The body the ``openai`` expert sends to its upstream's ``/embeddings``."""
    body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return orjson.dumps(body)


def upstream_vectors(raw: bytes, count: int, *, where: str) -> tuple[list[list[float]], int]:
    """The vectors (in input order) and prompt tokens of an upstream's embeddings answer."""
    try:
        payload = orjson.loads(raw)
        items = sorted(payload["data"], key=lambda item: item["index"])
        vectors = [_upstream_vector(item["embedding"]) for item in items]
        usage = payload.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or 0)
    except (ValueError, KeyError, TypeError):
        raise UpstreamError(
            f"{where}: the upstream answered something that is not an embeddings list: "
            f"{raw[:200]!r}"
        ) from None
    if len(vectors) != count:
        raise UpstreamError(f"{where}: the upstream sent {len(vectors)} vectors for {count} texts")
    return vectors, tokens


def _upstream_vector(value: Any) -> list[float]:
    if isinstance(value, str):  # a server that answers base64 whatever was asked
        packed = array("f")
        packed.frombytes(base64.b64decode(value))
        if sys.byteorder != "little":
            packed.byteswap()
        return packed.tolist()
    if not isinstance(value, list):
        raise TypeError("an embedding must be a list of numbers")
    return value


# -- the route ----------------------------------------------------------------------------------


def add_embeddings_routes(app: web.Application, options: OpenAIFrontendOptions) -> None:
    """Mount ``POST /v1/embeddings``; a misconfigured ``embeddings_model`` stops startup."""
    check_embeddings_model(app[MOE_KEY], options.embeddings_model)

    async def create_embeddings(request: web.Request) -> web.Response:
        moe = request.app[MOE_KEY]
        body = parse_body(EmbeddingsRequest, await read_json_body(request))
        texts = texts_of(
            body.input,
            max_inputs=options.embeddings_max_inputs,
            max_chars=options.embeddings_max_chars,
        )
        slot = embedder_slot(moe, body.model, options.embeddings_model)
        vectors, tokens = await embed(
            moe, slot, texts, request_id=request[REQUEST_ID_KEY], dimensions=body.dimensions
        )
        return json_response(embeddings_body(slot.name, vectors, tokens, body.encoding_format))

    app.router.add_post("/v1/embeddings", create_embeddings)
