"""The ``longformer`` expert over HTTP: every task, documents longer than the window, bad tasks,
a missing checkpoint, and concurrent requests sharing one model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from moe_longformer.testing import WINDOW
from tests.conftest import run_moe, user

DOCUMENT = " ".join(
    [
        "The committee reviewed the annual report and agreed on the budget for the next year.",
        "Researchers compared two methods and found that the second was more reliable.",
        "The contract states the obligations of both parties and the terms of payment.",
    ]
    * 6
)


def chunks(tokenizer, text: str) -> list[list[int]]:
    """The document cut into window-sized pieces, each framed by <s> ... </s>."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    body = WINDOW - 2
    return [
        [tokenizer.bos_token_id, *ids[i : i + body], tokenizer.eos_token_id]
        for i in range(0, len(ids), body)
    ]


def reference_embedding(folder: Path, text: str) -> list[float]:
    """Each chunk alone through LongformerModel, mean-pooled, averaged weighted by length."""
    import torch
    from transformers import AutoTokenizer, LongformerModel

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = LongformerModel.from_pretrained(folder).eval()
    total, count = None, 0
    with torch.inference_mode():
        for chunk in chunks(tokenizer, text):
            ids = torch.tensor([chunk])
            global_mask = torch.zeros_like(ids)
            global_mask[0, 0] = 1
            states = model(input_ids=ids, global_attention_mask=global_mask).last_hidden_state[0]
            total = states.sum(0) if total is None else total + states.sum(0)
            count += len(chunk)
    return (total / count).tolist()


def reference_summary(folder: Path, text: str, max_new_tokens: int) -> str:
    """Each chunk alone through LED's greedy generate, the summaries joined in order."""
    import torch
    from transformers import AutoTokenizer, LEDForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = LEDForConditionalGeneration.from_pretrained(folder).eval()
    parts = []
    with torch.inference_mode():
        for chunk in chunks(tokenizer, text):
            ids = torch.tensor([chunk])
            global_mask = torch.zeros_like(ids)
            global_mask[0, 0] = 1
            out = model.generate(
                input_ids=ids,
                global_attention_mask=global_mask,
                max_new_tokens=max_new_tokens,
                num_beams=1,
                do_sample=False,
            )
            parts.append(tokenizer.decode(out[0], skip_special_tokens=True).strip())
    return "\n".join(parts)


@pytest.fixture
async def client(gateway, longformer_config):
    return await gateway({"experts": {"moe-expert-longformer": longformer_config}})


def ask(text: str, task: str | None = None, **extra) -> dict:
    body = user(text, model="moe-expert-longformer", **extra)
    if task is not None:
        body["moe"] = {"task_type": task}
    return body


async def test_embed_a_document_longer_than_the_window_pools_every_chunk(
    client, tiny_longformer
) -> None:
    response = await client.post("/v1/chat/completions", json=ask(DOCUMENT, "embed"))
    assert response.status == 200, await response.text()
    body = await response.json()
    vector = json.loads(body["choices"][0]["message"]["content"])
    expected = reference_embedding(tiny_longformer["embed"], DOCUMENT)
    assert len(vector) == 32  # the tiny model's hidden size
    assert vector == pytest.approx(expected, abs=1e-4)
    # More tokens than one window holds went in: the document really was chunked.
    assert body["usage"]["prompt_tokens"] > 2 * WINDOW
    assert body["moe_metadata"]["experts_used"] == ["moe-expert-longformer"]


async def test_embed_a_short_text_is_one_chunk(client, tiny_longformer) -> None:
    response = await client.post("/v1/chat/completions", json=ask("A short note.", "embed"))
    vector = json.loads((await response.json())["choices"][0]["message"]["content"])
    assert vector == pytest.approx(
        reference_embedding(tiny_longformer["embed"], "A short note."), abs=1e-4
    )


async def test_summarize_a_long_document_summarises_each_chunk_in_order(
    client, tiny_longformer
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=ask(DOCUMENT, "summarize", max_tokens=5)
    )
    assert response.status == 200, await response.text()
    content = (await response.json())["choices"][0]["message"]["content"]
    assert content == reference_summary(tiny_longformer["summarize"], DOCUMENT, 5)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_longformer["summarize"])
    assert len(content.split("\n")) == len(chunks(tokenizer, DOCUMENT)) > 1


async def test_summarize_is_the_default_task(client, tiny_longformer) -> None:
    response = await client.post("/v1/chat/completions", json=ask(DOCUMENT, max_tokens=4))
    content = (await response.json())["choices"][0]["message"]["content"]
    assert content == reference_summary(tiny_longformer["summarize"], DOCUMENT, 4)


async def test_unknown_task_is_a_400_naming_the_tasks(client) -> None:
    response = await client.post("/v1/chat/completions", json=ask("text", "translate"))
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "unknown_task"
    assert "summarize, embed" in error["message"]


async def test_an_expert_without_a_summarizer_lists_only_embed(gateway, tiny_longformer) -> None:
    client = await gateway(
        {
            "experts": {
                "moe-expert-longformer": {
                    "kind": "longformer",
                    "embed_checkpoint": str(tiny_longformer["embed"]),
                    "summarize_checkpoint": None,
                }
            }
        }
    )
    response = await client.post("/v1/chat/completions", json=ask(DOCUMENT, "summarize"))
    assert response.status == 400
    assert "does: embed" in (await response.json())["error"]["message"]
    # With no summarizer, embed is the default task.
    response = await client.post("/v1/chat/completions", json=ask("short text"))
    assert len(json.loads((await response.json())["choices"][0]["message"]["content"])) == 32


async def test_concurrent_requests_share_the_model_without_racing(client) -> None:
    texts = [f"{DOCUMENT} Item {i}." for i in range(6)]
    sequential = []
    for text in texts:
        response = await client.post("/v1/chat/completions", json=ask(text, "embed"))
        sequential.append((await response.json())["choices"][0]["message"]["content"])
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=ask(text, "embed")) for text in texts)
    )
    concurrent = [(await r.json())["choices"][0]["message"]["content"] for r in responses]
    assert concurrent == sequential


async def test_a_full_queue_is_a_503_not_a_pile_up(gateway, longformer_config) -> None:
    client = await gateway(
        {"experts": {"moe-expert-longformer": {**longformer_config, "max_queue": 1}}}
    )
    responses = await asyncio.gather(
        *(
            client.post("/v1/chat/completions", json=ask(DOCUMENT * 3, "summarize"))
            for _ in range(4)
        )
    )
    statuses = sorted(r.status for r in responses)
    assert statuses[0] == 200
    assert 503 in statuses
    busy = next(r for r in responses if r.status == 503)
    error = (await busy.json())["error"]
    assert error["code"] == "expert_busy"
    assert "max_queue=1" in error["message"]
    assert busy.headers["Retry-After"] == "1"


def test_a_checkpoint_that_is_not_here_is_a_clear_startup_error(tmp_path) -> None:
    config = tmp_path / "moe.yaml"
    config.write_text("experts:\n  docs:\n    kind: longformer\n    summarize_checkpoint: null\n")
    result = run_moe(
        "route", "-c", str(config), "hello", env={"HF_HOME": str(tmp_path / "hf")}, timeout=60
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "experts.docs.embed_checkpoint" in result.stderr
    assert "'allenai/longformer-base-4096'" in result.stderr
    assert "not in the local Hugging Face cache" in result.stderr
    assert "huggingface-cli download" in result.stderr
