"""The ``byt5`` expert over HTTP: text-to-text generation and mean-pooled embeddings, computed
exactly as transformers computes them, and a clear error for a checkpoint that is not here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_moe, user

CODE = "def add(a, b):\n    return a + b  # ünïcødé & <symbols>"


def reference_generate(folder: Path, text: str, max_new_tokens: int) -> str:
    import torch
    from transformers import ByT5Tokenizer, T5ForConditionalGeneration

    tokenizer = ByT5Tokenizer()
    model = T5ForConditionalGeneration.from_pretrained(folder).eval()
    with torch.inference_mode():
        out = model.generate(
            **tokenizer([text], return_tensors="pt"), max_new_tokens=max_new_tokens
        )
    return tokenizer.decode(out[0][1:], skip_special_tokens=True)


def reference_embedding(folder: Path, text: str, max_bytes: int = 1024) -> list[float]:
    import torch
    from transformers import ByT5Tokenizer, T5ForConditionalGeneration

    ids = ByT5Tokenizer()([text], return_tensors="pt", truncation=True, max_length=max_bytes)
    model = T5ForConditionalGeneration.from_pretrained(folder).eval()
    with torch.inference_mode():
        states = model.get_encoder()(**ids).last_hidden_state[0]
    return states.mean(0).tolist()


@pytest.fixture
async def client(gateway, tiny_models):
    return await gateway(
        {
            "experts": {
                "moe-expert-byt5": {
                    "kind": "byt5",
                    "checkpoint": str(tiny_models["byt5"]),
                    "max_input_bytes": 64,
                }
            }
        }
    )


def ask(text: str, task: str | None = None, **extra) -> dict:
    body = user(text, model="moe-expert-byt5", **extra)
    if task is not None:
        body["moe"] = {"task_type": task}
    return body


async def test_generate_is_the_models_greedy_output(client, tiny_models) -> None:
    response = await client.post("/v1/chat/completions", json=ask(CODE, max_tokens=12))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["model"] == "moe-expert-byt5"
    # ByT5 reads bytes: one token per UTF-8 byte, plus </s>, up to max_input_bytes.
    assert body["usage"]["prompt_tokens"] == min(len(CODE.encode()) + 1, 64)
    expected = reference_generate(tiny_models["byt5"], CODE.encode()[:63].decode(), 12)
    assert expected  # the tiny model answers in ASCII bytes
    assert body["choices"][0]["message"]["content"] == expected
    assert body["usage"]["completion_tokens"] == 12
    assert body["choices"][0]["finish_reason"] == "length"


async def test_embed_is_the_mean_of_the_encoder_states(client, tiny_models) -> None:
    text = "XJ-2023/Ω§-556*"
    response = await client.post("/v1/chat/completions", json=ask(text, "embed"))
    assert response.status == 200, await response.text()
    vector = json.loads((await response.json())["choices"][0]["message"]["content"])
    assert len(vector) == 32
    assert vector == pytest.approx(reference_embedding(tiny_models["byt5"], text), abs=1e-5)


async def test_embed_of_a_long_input_reads_the_first_max_input_bytes(client, tiny_models) -> None:
    text = "0123456789abcdef" * 40
    response = await client.post("/v1/chat/completions", json=ask(text, "embed"))
    vector = json.loads((await response.json())["choices"][0]["message"]["content"])
    assert vector == pytest.approx(
        reference_embedding(tiny_models["byt5"], text, max_bytes=64), abs=1e-5
    )


async def test_process_is_the_seeds_name_for_generate(client, tiny_models) -> None:
    response = await client.post("/v1/chat/completions", json=ask("abc", "process", max_tokens=4))
    content = (await response.json())["choices"][0]["message"]["content"]
    assert content == reference_generate(tiny_models["byt5"], "abc", 4)


async def test_a_task_byt5_does_not_do_is_a_400(client) -> None:
    response = await client.post("/v1/chat/completions", json=ask("abc", "summarize"))
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "unknown_task"
    assert "generate, embed" in error["message"]


def test_a_checkpoint_that_is_not_here_is_a_clear_startup_error(tmp_path) -> None:
    config = tmp_path / "moe.yaml"
    config.write_text("experts:\n  bytes:\n    kind: byt5\n")  # default: google/byt5-small
    result = run_moe(
        "route", "-c", str(config), "hi", env={"HF_HOME": str(tmp_path / "hf")}, timeout=60
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "experts.bytes.checkpoint: checkpoint 'google/byt5-small'" in result.stderr
    assert "huggingface-cli download google/byt5-small" in result.stderr


def test_a_folder_that_is_not_a_model_is_a_clear_startup_error(tmp_path) -> None:
    config = tmp_path / "moe.yaml"
    config.write_text(f"experts:\n  bytes:\n    kind: byt5\n    checkpoint: {tmp_path}\n")
    result = run_moe("route", "-c", str(config), "hi")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "has no config.json" in result.stderr


def test_the_example_config_says_which_checkpoint_to_provide(tmp_path) -> None:
    import moe_byt5

    example = Path(moe_byt5.__file__).parent / "examples" / "process.yaml"
    result = run_moe("route", "-c", str(example), "hi", env={"HF_HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "experts.moe-expert-byt5.checkpoint: checkpoint 'google/byt5-small'" in result.stderr
