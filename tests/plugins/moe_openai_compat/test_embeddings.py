"""``POST /v1/embeddings`` through the official openai SDK: an OpenAI-compatible upstream's own
``/embeddings`` passed through (a faithful fake on loopback), a local embedder, and the 4xx
answers for what cannot be embedded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from moe_core import Expert, ExpertCard, ExpertResult, InvalidRequest, Options, hookimpl
from moe_openai_compat.fake_upstream import FakeUpstream, fake_vector


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


class SlowEmbedderOptions(Options):
    load_delay_s: float = 0.0
    delay_s: float = 0.0


class SlowEmbedder(Expert):
    """A local embedder of four-number vectors (one per text: its length, vowels, spaces, 1)."""

    options: SlowEmbedderOptions

    def card(self) -> ExpertCard:
        return ExpertCard(capabilities=["embed"], cost_per_1k_input=0.5)

    async def start(self) -> None:
        await asyncio.sleep(self.options.load_delay_s)

    async def generate(self, request: Any) -> ExpertResult:
        raise AssertionError("an embedder is never asked to chat here")

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        if dimensions not in (None, 4):
            raise InvalidRequest("this expert makes 4 dimensions", param="dimensions")
        await asyncio.sleep(self.options.delay_s)
        vectors = [
            [float(len(t)), float(sum(c in "aeiou" for c in t)), float(t.count(" ")), 1.0]
            for t in texts
        ]
        return vectors, sum(len(text.split()) for text in texts)


class _SlowEmbedderPlugin:
    @hookimpl
    def moe_register_experts(self, register) -> None:
        register("slow-embedder", SlowEmbedder, options=SlowEmbedderOptions)


LOCAL = [("slow-embedder", _SlowEmbedderPlugin())]


def remote_config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "experts": {
            "chat": {"kind": "echo"},
            "remote": {
                "kind": "openai",
                "base_url": base_url,
                "model": "text-embedding-3-small",
                "card": {"capabilities": ["embed"]},
            },
            **extra,
        }
    }


async def sdk(gateway, config, plugins=()) -> openai.AsyncOpenAI:
    client = await gateway(config, plugins=plugins)
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


async def test_sdk_single_and_batch_pass_through_to_the_upstream(gateway, upstream):
    fake, base_url = upstream
    client = await sdk(gateway, remote_config(base_url))

    single = await client.embeddings.create(model="remote", input="hello world")
    assert single.model == "remote" and len(single.data) == 1
    assert close(single.data[0].embedding, fake_vector("hello world"))
    assert single.usage.prompt_tokens == 2 and single.usage.total_tokens == 2

    batch = await client.embeddings.create(model="remote", input=["one", "two words", "a b c"])
    assert [item.index for item in batch.data] == [0, 1, 2]
    for item, text in zip(batch.data, ["one", "two words", "a b c"], strict=True):
        assert close(item.embedding, fake_vector(text))
    assert batch.usage.prompt_tokens == 6
    # The upstream got its own model name and the texts as one batch.
    sent = fake.embedding_requests[-1]
    assert sent["model"] == "text-embedding-3-small"
    assert sent["input"] == ["one", "two words", "a b c"]


async def test_base64_and_float_carry_the_same_vector(gateway, upstream):
    _, base_url = upstream
    client = await sdk(gateway, remote_config(base_url))
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    packed = await client.embeddings.create(model="remote", input="same text")
    plain = await client.embeddings.create(
        model="remote", input="same text", encoding_format="float"
    )
    raw = await client.embeddings.with_raw_response.create(
        model="remote", input="same text", encoding_format="base64"
    )
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    assert close(packed.data[0].embedding, plain.data[0].embedding)
    assert close(plain.data[0].embedding, fake_vector("same text"))


async def test_dimensions_are_the_upstreams_to_honour(gateway, upstream):
    fake, base_url = upstream
    client = await sdk(gateway, remote_config(base_url))
    short = await client.embeddings.create(model="remote", input="shorter", dimensions=8)
    assert close(short.data[0].embedding, fake_vector("shorter", 8))
    assert fake.embedding_requests[-1]["dimensions"] == 8
    with pytest.raises(openai.BadRequestError, match="at most 16 dimensions"):
        await client.embeddings.create(model="remote", input="longer", dimensions=99)


async def test_auto_embeds_with_the_expert_whose_card_says_embed(gateway, upstream):
    _, base_url = upstream
    client = await sdk(gateway, remote_config(base_url))
    answer = await client.embeddings.create(model="auto", input="which expert?")
    assert answer.model == "remote"


async def test_auto_without_an_embedder_is_a_400_naming_model(gateway):
    client = await sdk(gateway, {"experts": {"chat": {"kind": "echo"}}})
    with pytest.raises(openai.BadRequestError) as error:
        await client.embeddings.create(model="auto", input="x")
    assert error.value.param == "model" and "embed" in error.value.message


async def test_models_that_cannot_embed(gateway, upstream):
    fake, base_url = upstream
    fake.embedding_models = frozenset({"text-embedding-3-small"})
    config = remote_config(base_url, gpt={"kind": "openai", "base_url": base_url})
    client = await sdk(gateway, config)
    with pytest.raises(openai.NotFoundError) as missing:
        await client.embeddings.create(model="nope", input="x")
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as chat_only:
        await client.embeddings.create(model="chat", input="x")
    assert chat_only.value.param == "model" and "remote" in chat_only.value.message
    # An upstream chat model: the upstream's own refusal, as a 400.
    with pytest.raises(openai.BadRequestError, match="does not support embeddings"):
        await client.embeddings.create(model="gpt", input="x")


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": ""}, "input", "empty string"),
        ({"input": []}, "input", "non-empty"),
        ({"input": ["fine", ""]}, "input", "input[1]"),
        ({"input": [[1, 2, 3]]}, "input", "must be a string"),
        ({"input": [1, 2, 3]}, "input", "token arrays"),
        ({"input": ["x"] * 2049}, "input", "at most 2048"),
        ({"input": ["x" * 600_000, "y" * 600_000]}, "input", "characters"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format", "float"),
        ({"input": "x", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
        ({"input": "x", "colour": "blue"}, "colour", "Unknown parameter"),
        ({}, "input", "Missing required parameter"),
    ],
)
async def test_bad_input_is_a_400_naming_the_param(gateway, upstream, body, param, words):
    _, base_url = upstream
    client = await gateway(remote_config(base_url))
    response = await client.post("/v1/embeddings", json={"model": "remote", **body})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == param and words in error["message"]
    assert error["type"] == "invalid_request_error"


async def test_a_local_embedder_refuses_dimensions_it_cannot_make(gateway):
    client = await sdk(gateway, {"experts": {"local": {"kind": "slow-embedder"}}}, LOCAL)
    answer = await client.embeddings.create(
        model="local", input=["a cat", "dogs"], encoding_format="float", dimensions=4
    )
    assert [item.embedding for item in answer.data] == [[5.0, 2.0, 1.0, 1.0], [4.0, 1.0, 0.0, 1.0]]
    with pytest.raises(openai.BadRequestError) as error:
        await client.embeddings.create(model="local", input="x", dimensions=3)
    assert error.value.param == "dimensions"


async def test_calls_are_guarded_and_counted_like_chat_calls(gateway):
    config = {
        "experts": {
            "loading": {"kind": "slow-embedder", "load_delay_s": 30},
            "slow": {"kind": "slow-embedder", "delay_s": 5, "timeout_s": 0.1},
            "local": {"kind": "slow-embedder"},
        }
    }
    client = await gateway(config, plugins=LOCAL, wait=False)
    await asyncio.sleep(0.05)  # let the quick ones load
    loading = await client.post("/v1/embeddings", json={"model": "loading", "input": "x"})
    assert loading.status == 503 and loading.headers["Retry-After"] == "5"
    slow = await client.post("/v1/embeddings", json={"model": "slow", "input": "x"})
    assert slow.status == 504
    assert (await slow.json())["error"]["code"] == "expert_timeout"
    ok = await client.post("/v1/embeddings", json={"model": "local", "input": "one two three"})
    assert ok.status == 200
    stats = (await (await client.get("/-/stats")).json())["memory"]["experts"]
    assert stats["local"]["calls"] == 1 and stats["local"]["prompt_tokens"] == 3
    assert stats["local"]["cost_usd"] == pytest.approx(3 * 0.5 / 1000)
    assert stats["slow"]["errors"] == 1


async def test_an_unreachable_upstream_is_a_503(gateway):
    client = await sdk(gateway, remote_config("http://127.0.0.1:9/v1"))
    with pytest.raises(openai.InternalServerError) as error:
        await client.embeddings.create(model="remote", input="x")
    assert error.value.status_code == 503
