"""How the ``hf-causal-lm`` expert decodes: repetition control, natural ends, the model's own
generation config and per-expert overrides, on a scripted model that loops like a small one."""

from __future__ import annotations

import asyncio
import json
import re
import shutil

import pytest

from moe_core.testing import make_moe
from tests.conftest import user
from tests.plugins.moe_domain_llms.scripted_models import SENTENCE, build_looping_model

ONCE = SENTENCE


@pytest.fixture(scope="module")
def looping_model(tmp_path_factory) -> str:
    return str(build_looping_model(tmp_path_factory.mktemp("looping")))


def local(model: str, **options) -> dict:
    return {"experts": {"tiny": {"kind": "hf-causal-lm", "model": model, **options}}}


async def answer(moe, text: str = "hello", **extra):
    return (await moe.complete(user(text, **extra))).result


async def test_without_repetition_control_the_model_loops_to_the_limit(looping_model):
    async with make_moe(local(looping_model)) as moe:
        result = await answer(moe, max_tokens=40)
    assert result.content.startswith(ONCE * 4) and result.finish_reason == "length"


@pytest.mark.parametrize(
    "penalty", [{"presence_penalty": 0.5}, {"repetition_penalty": 1.2}, {"frequency_penalty": 1}]
)
async def test_each_penalty_breaks_the_loop_and_the_answer_ends_by_itself(looping_model, penalty):
    async with make_moe(local(looping_model)) as moe:
        result = await answer(moe, max_tokens=40, **penalty)
    assert result.content == ONCE
    assert result.finish_reason == "stop" and result.usage.completion_tokens == 9  # 8 + the end


async def test_frequency_penalty_grows_with_each_repeat_while_presence_penalty_does_not(
    looping_model,
):
    # The loop's logit is 3 and ending is 2.7: 0.2 a repeat ends it after two rounds.
    async with make_moe(local(looping_model)) as moe:
        frequency = await answer(moe, max_tokens=40, frequency_penalty=0.2)
        presence = await answer(moe, max_tokens=40, presence_penalty=0.2)
    assert frequency.content == ONCE * 2 and frequency.finish_reason == "stop"
    assert presence.content.startswith(ONCE * 4) and presence.finish_reason == "length"


async def test_the_prompt_never_counts_as_repetition(looping_model):
    # The question holds the whole sentence: were the prompt penalised, the answer would end at
    # once (the chat template's end-of-turn tokens would be penalised the same way).
    async with make_moe(local(looping_model)) as moe:
        result = await answer(moe, ONCE * 3, max_tokens=40, presence_penalty=0.5)
    assert result.content == ONCE


async def test_expert_options_are_the_default_and_the_request_overrides_them(looping_model):
    async with make_moe(local(looping_model, repetition_penalty=1.2)) as moe:
        default = await answer(moe, max_tokens=40)
        turned_off = await answer(moe, max_tokens=40, repetition_penalty=1.0)
        streamed = [d async for d in await moe.open_stream(user("hello", max_tokens=40))]
    assert default.content == ONCE
    assert turned_off.content.startswith(ONCE * 4)
    assert "".join(d.content or "" for d in streamed) == ONCE


async def test_the_models_own_generation_config_is_the_last_default(looping_model, tmp_path):
    folder = tmp_path / "with-config"
    shutil.copytree(looping_model, folder)
    generation = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(
        json.dumps({**generation, "repetition_penalty": 1.2})
    )
    async with make_moe(local(str(folder))) as moe:
        from_model = await answer(moe, max_tokens=40)
    async with make_moe(local(str(folder), repetition_penalty=1.0)) as moe:
        overridden = await answer(moe, max_tokens=40)
    assert from_model.content == ONCE
    assert overridden.content.startswith(ONCE * 4)


async def test_a_default_limit_ends_the_answer_at_a_sentence_end(looping_model):
    # 12 tokens is one and a half sentences: the answer goes on to the end of the second one.
    async with make_moe(local(looping_model, max_new_tokens=12)) as moe:
        ended = await answer(moe)
        asked = await answer(moe, max_tokens=12)
    async with make_moe(local(looping_model, max_new_tokens=12, finish_sentence_tokens=2)) as moe:
        bounded = await answer(moe)
    assert ended.content == ONCE * 2 and ended.usage.completion_tokens == 16
    assert ended.finish_reason == "length"
    # An explicit max_tokens is exact, as OpenAI's is; the grace period is bounded.
    assert asked.usage.completion_tokens == 12 and not asked.content.endswith(".")
    assert bounded.usage.completion_tokens == 14


async def test_answers_with_different_penalties_share_a_batch_and_match_alone(looping_model):
    async with make_moe(local(looping_model, max_wait_ms=50)) as moe:
        batcher = moe.experts["tiny"].expert.loaded.batcher
        settings = [{}, {"presence_penalty": 0.5}, {"frequency_penalty": 0.2}]
        alone = [await answer(moe, max_tokens=30, **extra) for extra in settings]
        before = batcher.batches
        together = await asyncio.gather(*(answer(moe, max_tokens=30, **e) for e in settings))
        assert batcher.batches - before == 1
    assert [r.content for r in together] == [r.content for r in alone]
    assert [r.content.count(ONCE) for r in together] == [3, 1, 2]


async def test_penalties_over_http_and_invalid_values_are_400s(gateway, looping_model):
    client = await gateway(local(looping_model))
    body = user("hello", max_tokens=40, frequency_penalty=1.0)
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200
    assert (await response.json())["choices"][0]["message"]["content"] == ONCE
    for wrong in ({"top_k": "many"}, {"repetition_penalty": 0}, {"top_k": 1.5}):
        response = await client.post("/v1/chat/completions", json=user("hi", **wrong))
        error = (await response.json())["error"]
        assert response.status == 400 and error["param"] == next(iter(wrong))


@pytest.mark.slow
async def test_the_default_experts_answer_without_looping_on_the_real_model():
    """The shipped settings on SmolLM2-135M: the haiku that came back as "A leaf, a leaf, a
    leaf," x25 now ends, and 17 times 23 is 391."""
    from importlib import resources

    import yaml

    default = yaml.safe_load(
        resources.files("moe_domain_llms").joinpath("default.yaml").read_text("utf-8")
    )
    healthcare = default["experts"]["healthcare"]
    config = {"experts": {"healthcare": {**healthcare, "fallbacks": []}}}
    async with make_moe(config) as moe:
        haiku = await answer(moe, "Write a haiku")
        product = await answer(moe, "What is 17 \N{MULTIPLICATION SIGN} 23?")
    lines = [
        " ".join(part.lower().split())
        for part in re.split(r"(?<=[.!?])\s+|\n+", haiku.content)
        if len(part.split()) >= 3
    ]
    assert len(lines) == len(set(lines)), haiku.content
    assert haiku.usage.completion_tokens <= healthcare["max_new_tokens"] + 48
    assert "391" in product.content
