"""The OpenAI frontend's options (``server.frontends.openai``) for embeddings and stored
responses: the expert ``auto`` embeds with, the limits of one request, the store's size."""

from __future__ import annotations

import pytest

from moe_core import ConfigError
from tests.plugins.moe_openai_compat.test_embeddings import LOCAL


def config(**openai_options) -> dict:
    return {
        "server": {"frontends": {"openai": openai_options}},
        "experts": {
            "first": {"kind": "slow-embedder"},
            "chosen": {"kind": "slow-embedder"},
            "chat": {"kind": "echo"},
        },
    }


async def test_embeddings_model_is_what_auto_embeds_with(gateway):
    default = await gateway(config(), plugins=LOCAL)
    answer = await default.post("/v1/embeddings", json={"model": "auto", "input": "x"})
    assert (await answer.json())["model"] == "first"
    chosen = await gateway(config(embeddings_model="chosen"), plugins=LOCAL)
    answer = await chosen.post("/v1/embeddings", json={"model": "auto", "input": "x"})
    assert (await answer.json())["model"] == "chosen"


@pytest.mark.parametrize(
    ("name", "words"), [("missing", "no expert is named"), ("chat", "cannot make embeddings")]
)
async def test_an_embeddings_model_that_cannot_embed_stops_startup(gateway, name, words):
    with pytest.raises(ConfigError, match=f"server.frontends.openai.embeddings_model: .*{words}"):
        await gateway(config(embeddings_model=name), plugins=LOCAL)


async def test_request_limits_are_options(gateway):
    client = await gateway(config(embeddings_max_inputs=2, embeddings_max_chars=10), plugins=LOCAL)
    many = await client.post("/v1/embeddings", json={"model": "first", "input": ["a", "b", "c"]})
    assert many.status == 400 and "at most 2" in (await many.json())["error"]["message"]
    long = await client.post("/v1/embeddings", json={"model": "first", "input": "x" * 11})
    assert long.status == 400 and "at most 10" in (await long.json())["error"]["message"]


async def test_a_store_of_no_responses_keeps_none(gateway):
    client = await gateway(config(responses_store_max=0), plugins=LOCAL)
    created = await client.post("/v1/responses", json={"model": "chat", "input": "hi"})
    assert created.status == 200
    stored = await client.get(f"/v1/responses/{(await created.json())['id']}")
    assert stored.status == 404


async def test_unknown_options_are_config_errors(gateway):
    with pytest.raises(ConfigError, match="server.frontends.openai"):
        await gateway(config(embedding_model="first"), plugins=LOCAL)
