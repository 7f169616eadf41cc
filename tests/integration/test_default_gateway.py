"""`moe serve` with the embedded default (the real SmolLM2 model, no config, no network), used
by the official openai SDK exactly as a user would: a separate server process on loopback."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import run_moe

pytestmark = pytest.mark.slow


@pytest.fixture
def server(default_gateway: str) -> str:
    return default_gateway


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0)


def test_the_readme_curl_answers_with_a_real_model(server):
    response = httpx.post(
        f"{server}/v1/chat/completions",
        timeout=120,
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert "Paris" in body["choices"][0]["message"]["content"]
    metadata = body["moe_metadata"]
    assert metadata["experts_used"] == ["general"]
    assert metadata["gate"] == "embedding" and metadata["strategy"] == "single"
    assert "sentence-embedding classifier: general" in metadata["rationale"]
    assert 0.5 < metadata["confidence"] <= 1.0
    assert metadata["latency_ms"]["general"] > 0
    assert body["usage"]["completion_tokens"] > 0


def test_the_sdk_streams_and_lists_models(client):
    stream = client.chat.completions.create(
        model="general",
        max_tokens=20,
        stream=True,
        messages=[{"role": "user", "content": "Name three colours."}],
    )
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) > 3
    assert "".join(p or "" for p in pieces).strip()
    models = [model.id for model in client.models.list()]
    chat = ["general", "healthcare", "finance", "cybersecurity"]
    assert models == ["auto", *chat, "all-minilm-l6-v2", "image-facts"]


def test_greedy_answers_are_the_same_streamed_or_not(client):
    messages = [{"role": "user", "content": "Say hello in French."}]
    whole = client.chat.completions.create(model="auto", max_tokens=16, messages=messages)
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="auto", max_tokens=16, messages=messages, stream=True
        )
        if chunk.choices
    )
    assert whole.choices[0].message.content == streamed


def test_sdk_errors_are_its_own_exceptions(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[])


def test_cli_route_explains_the_default_decision():
    result = run_moe("route", "What is the capital of France?", env={"MOE_CONFIG": None})
    assert result.returncode == 0, result.stderr
    assert "experts:    general" in result.stdout
    assert "gate:       embedding" in result.stdout
    assert "rationale:  sentence-embedding classifier: general" in result.stdout
    assert "Loading weights" not in result.stdout + result.stderr
