"""The seed's chat model ids on the OpenAI API (official SDK as the client): listed, answering,
``moe-auto`` routing through the features gate, and falling back when an expert is unhealthy or
too slow, with ``moe_metadata`` saying so."""

from __future__ import annotations

import openai
import pytest

from moe_core import ConfigError, MoE
from tests.plugins.moe_byt5.test_process import CODE, DOCUMENT


async def sdk(gateway, config) -> openai.AsyncOpenAI:
    client = await gateway(config)
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="-", max_retries=0)


async def ask(client: openai.AsyncOpenAI, model: str, text: str, **extra):
    return await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=6, **extra
    )


async def test_the_seed_model_ids_are_listed(gateway, config) -> None:
    client = await sdk(gateway, config)
    ids = [model.id async for model in client.models.list()]
    assert ids == ["auto", "moe-auto", "moe-expert-byt5", "moe-expert-longformer"]


async def test_each_expert_answers_by_its_name(gateway, config) -> None:
    client = await sdk(gateway, config)
    byt5 = await ask(client, "moe-expert-byt5", CODE)
    assert byt5.model == "moe-expert-byt5"
    assert byt5.choices[0].message.content
    longformer = await ask(client, "moe-expert-longformer", DOCUMENT)
    assert longformer.model == "moe-expert-longformer"
    assert len(longformer.choices[0].message.content.split("\n")) > 3  # one line per chunk


@pytest.mark.parametrize(
    ("text", "expert"), [(CODE, "moe-expert-byt5"), (DOCUMENT, "moe-expert-longformer")]
)
async def test_moe_auto_lets_the_features_gate_choose(gateway, config, text, expert) -> None:
    client = await sdk(gateway, config)
    auto = await ask(client, "moe-auto", text)
    direct = await ask(client, expert, text)
    assert auto.choices[0].message.content == direct.choices[0].message.content
    assert auto.usage.prompt_tokens == direct.usage.prompt_tokens
    # The answer says which expert the gate chose, as for "auto", the gateway's own name.
    assert auto.model == expert
    assert auto.model_extra["moe_metadata"]["gate"] == "features"
    assert auto.model_extra["moe_metadata"]["experts_used"] == [expert]


async def test_moe_auto_streams(gateway, config) -> None:
    client = await sdk(gateway, config)
    direct = await ask(client, "moe-expert-byt5", CODE)
    stream = await ask(client, "moe-auto", CODE, stream=True)
    text = "".join(
        [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    )
    assert text == direct.choices[0].message.content


async def test_an_expert_that_failed_to_load_falls_back(gateway, config, tmp_path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "t5"}')
    (broken / "model.safetensors").write_bytes(b"not weights")
    config["experts"]["moe-expert-byt5"]["checkpoint"] = str(broken)
    client = await sdk(gateway, config)
    answer = await ask(client, "moe-expert-byt5", DOCUMENT)
    assert answer.model == "moe-expert-longformer"
    metadata = answer.model_extra["moe_metadata"]
    assert metadata["experts_used"] == ["moe-expert-longformer"]
    [fallback] = metadata["fallbacks"]
    assert fallback["expert"] == "moe-expert-byt5"
    assert "failed to load" in fallback["error"]


async def test_an_expert_that_times_out_falls_back(gateway, config) -> None:
    config["experts"]["moe-expert-longformer"]["timeout_s"] = 0.001
    client = await sdk(gateway, config)
    answer = await ask(client, "moe-expert-longformer", DOCUMENT)
    assert answer.model == "moe-expert-byt5"
    [fallback] = answer.model_extra["moe_metadata"]["fallbacks"]
    assert fallback["expert"] == "moe-expert-longformer"
    assert "did not answer within 0.001 s" in fallback["error"]


async def test_process_reports_the_fallback_and_does_not_cache_it(gateway, config) -> None:
    config["experts"]["moe-expert-longformer"]["timeout_s"] = 0.001
    client = await gateway(config)
    for _ in range(2):
        response = await client.post("/process", json={"text": DOCUMENT, "task": "embed"})
        body = await response.json()
        assert response.status == 200, body
        assert body["expert_used"] == "moe-expert-byt5"
        assert body["fallbacks"][0]["expert"] == "moe-expert-longformer"
        assert body["cached"] is False


def test_a_gate_alias_cannot_also_be_an_expert_name(config) -> None:
    config["gate"]["aliases"] = ["moe-expert-byt5"]
    with pytest.raises(ConfigError, match="'moe-expert-byt5' is reserved for the gate"):
        MoE.from_config(config)
