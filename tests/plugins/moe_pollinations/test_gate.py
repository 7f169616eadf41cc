"""The task-classifier gate: LLM verdicts when valid and in time, the heuristic otherwise; the
verdict picks models, strategy and sampling parameters."""

from __future__ import annotations

import json

import pytest

from moe_core.testing import make_moe
from moe_pollinations.classify import heuristic, parse_llm_answer
from moe_pollinations.testing import ModelBehaviour
from tests.conftest import user
from tests.plugins.moe_pollinations.conftest import full_config

VERDICT = {
    "task_type": "creative",
    "complexity": 0.3,
    "creativity": 0.9,
    "visual_need": 0.0,
    "audio_need": 0.0,
    "needs_detail": False,
}


@pytest.mark.parametrize(
    ("prompt", "task"),
    [
        ("hi, how are you?", "text"),
        ("Fix this bug: def f(x): return x +", "code"),
        ("Write a SQL query that counts orders per customer", "code"),
        ("Prove that the square root of 2 is irrational, step by step", "reasoning"),
        ("Write a poem about autumn leaves", "creative"),
        ("Draw a red fox in the snow", "image"),
        ("Say it out loud: good morning everyone", "speech"),
        ("Explain photosynthesis and show me a diagram", "multimodal"),
    ],
)
def test_heuristic_task_types(prompt, task):
    assert heuristic(prompt).task_type == task


def test_heuristic_scores_grow_with_the_prompt():
    simple, hard = (
        heuristic("What is 2+2?"),
        heuristic(
            "Give a comprehensive, technical analysis of the implications of quantum computing on "
            "cryptography, and compare the trade-offs of post-quantum schemes step by step " * 3
        ),
    )
    assert hard.complexity > simple.complexity + 0.3
    assert heuristic("Write a poem and a story").creativity > simple.creativity
    assert heuristic("Draw a menu with prices written on it").needs_detail
    assert not heuristic("Draw a cat").needs_detail


@pytest.mark.parametrize(
    "answer",
    ["not json", '{"task_type": "dance", "complexity": 0.1}', '{"task_type": "text"}', "[]"],
)
def test_invalid_llm_answers_are_refused(answer):
    with pytest.raises(ValueError):
        parse_llm_answer(answer)


def test_llm_answer_in_a_code_fence_is_accepted():
    assert parse_llm_answer("```json\n" + json.dumps(VERDICT) + "\n```").task_type == "creative"


async def route(config, body):
    moe = make_moe(config)
    await moe.start(experts=False)
    try:
        return await moe.route(body)
    finally:
        await moe.aclose()


async def test_the_llm_verdict_is_used_when_valid(fake, expert_options, connection):
    fake.behaviour["openai-fast"] = ModelBehaviour(reply=json.dumps(VERDICT))
    config = full_config(expert_options, connection, classifier="llm")
    decision = await route(config, user("hello"))
    assert decision.evidence[0]["classifier"] == "llm:openai-fast"
    assert decision.experts == ["mistral"]  # the first creative model
    assert decision.overrides["presence_penalty"] == 0.6
    assert decision.overrides["temperature"] > 1.0
    sent = fake.calls("openai-fast")[0].body
    assert sent["response_format"] == {"type": "json_object"} and sent["temperature"] == 0


@pytest.mark.parametrize(
    ("behaviour", "why"),
    [
        (ModelBehaviour(reply="I think it is a creative task!"), "no JSON object"),
        (ModelBehaviour(reply='{"task_type": "sing"}'), "invalid classifier JSON"),
        (ModelBehaviour(delay_s=2), "within 0.2 s"),
        (ModelBehaviour(status=503), "status 503"),
    ],
)
async def test_the_heuristic_decides_when_the_llm_fails(
    fake, expert_options, connection, behaviour, why
):
    fake.behaviour["openai-fast"] = behaviour
    config = full_config(
        expert_options, connection, classifier="llm", gate={"classifier_timeout_s": 0.2}
    )
    decision = await route(config, user("Write a python function that adds two numbers"))
    how = decision.evidence[0]["classifier"]
    assert how.startswith("heuristic (llm failed") and why in how
    assert decision.experts == ["qwen-coder"]
    assert len(fake.calls("openai-fast")) == 1  # the classifier is never retried


async def test_complex_reasoning_combines_several_strong_models(expert_options, connection):
    config = full_config(expert_options, connection)
    prompt = (
        "Analyze the implications of quantum computing on cryptography: compare lattice and "
        "hash-based schemes, evaluate the trade-offs, and explain step by step why "
        "a comprehensive migration plan is needed."
    )
    decision = await route(config, user(prompt))
    assert decision.strategy == "parallel-vote"
    assert decision.experts == ["openai-large", "deepseek-reasoning", "openai-reasoning"]
    assert decision.overrides["max_tokens"] >= 1200


async def test_a_combined_reasoning_answer_runs_through_the_vote(
    gateway, fake, expert_options, connection
):
    for model in ("openai-large", "deepseek-reasoning", "openai-reasoning"):
        fake.behaviour[model] = ModelBehaviour(reply="The answer is 42")
    client = await gateway(full_config(expert_options, connection))
    prompt = "Prove step by step and analyze why the comprehensive theorem holds, then evaluate it"
    body = await (await client.post("/v1/chat/completions", json=user(prompt))).json()
    assert body["moe_metadata"]["strategy"] == "parallel-vote"
    assert len(body["moe_metadata"]["experts_used"]) == 3
    assert body["choices"][0]["message"]["content"] == "The answer is 42"


async def test_the_caller_can_name_the_task(expert_options, connection):
    config = full_config(expert_options, connection)
    decision = await route(config, user("hello", moe={"task_type": "image"}))
    assert decision.experts == ["flux"] and decision.strategy == "multimodal"
    assert decision.evidence[0]["classifier"] == "caller (moe.task_type)"


async def test_a_picture_question_goes_to_a_vision_model(expert_options, connection):
    config = full_config(expert_options, connection, gate={"fast": ["qwen-coder", "openai"]})
    image = {"type": "image_url", "image_url": {"url": "https://example.org/x.jpg"}}
    decision = await route(
        config,
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}
            ]
        },
    )
    assert decision.experts == ["openai"]  # qwen-coder cannot see pictures


async def test_the_gate_works_with_a_subset_of_models(tmp_path, connection):
    config = {
        "experts": {
            "writer": {"kind": "pollinations", "model": "llamascout", "cache_dir": str(tmp_path)},
            "painter": {"kind": "pollinations", "model": "turbo", "cache_dir": str(tmp_path)},
        },
        "gate": {"kind": "task-classifier", "classifier": "heuristic", **connection},
    }
    assert (await route(config, user("Draw a boat"))).experts == ["painter"]
    assert (await route(config, user("Write a poem"))).experts == ["writer"]
    decision = await route(config, user("Say it out loud: hello"))
    assert decision.experts == ["writer"]  # no speech model: the best it can do is text


async def test_complex_reasoning_can_go_through_a_reasoning_then_execution_chain(
    gateway, expert_options, connection
):
    config = full_config(expert_options, connection, gate={"combined_strategy": "chain"})
    config["combiner"] = {
        "kind": "chain",
        "preset": "reasoning-execution",
        "reasoner": "deepseek-reasoning",
        "executor": "openai-large",
    }
    client = await gateway(config)
    prompt = "Prove step by step and analyze why the comprehensive theorem holds, then evaluate it"
    body = await (await client.post("/v1/chat/completions", json=user(prompt))).json()
    assert body["moe_metadata"]["strategy"] == "chain"
    assert body["moe_metadata"]["experts_used"] == ["deepseek-reasoning", "openai-large"]
    assert body["choices"][0]["message"]["content"].startswith("openai-large says:")
