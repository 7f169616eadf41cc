"""``POST /process`` and ``/process/sync`` over HTTP on the tiny models: every task of both
experts, routing, forcing, the cache, post-processing options, and every kind of bad input."""

from __future__ import annotations

import asyncio
import os

import pytest

from moe_byt5 import features
from tests.plugins.moe_byt5.conftest import service_config

CODE = "const total = items.reduce((sum, x) => sum + x.price * x.qty, 0);"
DOCUMENT = "\n\n".join(
    [
        "The council met on Monday to discuss the plan for the new library. Several members said "
        "that the old building was too small for the number of people who use it, and that the "
        "reading rooms were cold in the winter and too warm in the summer months.",
        "After a long discussion they agreed to ask the architects for two designs, one that "
        "extends the existing building and one that starts again on the site of the old market, "
        "so that residents can compare the costs and the benefits of each of them.",
        "A public meeting will be held next month, where people can see both designs and say "
        "which one they prefer before the council takes its final decision in the spring.",
    ]
)


@pytest.fixture
async def client(gateway, config):
    return await gateway(config)


async def post(client, body, path: str = "/process"):
    response = await client.post(path, json=body)
    return response.status, await response.json()


@pytest.mark.parametrize("path", ["/process", "/process/sync"])
async def test_short_code_is_processed_by_byt5(client, path) -> None:
    status, body = await post(client, {"text": CODE}, path)
    assert status == 200, body
    assert body["expert_used"] == "moe-expert-byt5"
    assert isinstance(body["result"], str) and body["result"]
    assert 0.5 < body["confidence"] <= 1.0
    assert body["processing_time"] > 0
    assert body["input_features"] == pytest.approx(features.extract(CODE))
    assert body["task"] == "process"
    assert body["gate"] == "features"
    assert body["fallbacks"] == []


async def test_both_paths_give_the_same_answer(client) -> None:
    _, first = await post(client, {"text": CODE, "options": {"max_tokens": 5}}, "/process")
    _, second = await post(client, {"text": CODE, "options": {"max_tokens": 5}}, "/process/sync")
    assert first["result"] == second["result"]
    assert first["expert_used"] == second["expert_used"]


async def test_a_long_document_is_summarised_by_longformer_chunk_by_chunk(client) -> None:
    status, body = await post(client, {"text": DOCUMENT, "task": "summarize"})
    assert status == 200, body
    assert body["expert_used"] == "moe-expert-longformer"
    # Longer than the tiny LED's 32-token window: one summary line per chunk.
    assert len(body["result"].split("\n")) > 3
    _, default = await post(client, {"text": DOCUMENT})
    assert default["expert_used"] == "moe-expert-longformer"
    assert default["result"] == body["result"]


@pytest.mark.parametrize(
    ("text", "expert"), [(CODE, "moe-expert-byt5"), (DOCUMENT, "moe-expert-longformer")]
)
async def test_embed_answers_a_vector_from_the_routed_expert(client, text, expert) -> None:
    status, body = await post(client, {"text": text, "task": "embed"})
    assert status == 200, body
    assert body["expert_used"] == expert
    assert len(body["result"]) == 32
    assert all(isinstance(value, float) for value in body["result"])


async def test_a_task_only_one_expert_does_goes_there_whatever_the_input(client) -> None:
    _, body = await post(client, {"text": DOCUMENT, "task": "generate"})
    assert body["expert_used"] == "moe-expert-byt5"
    assert "longformer cannot do task 'generate'" in body["rationale"]
    _, body = await post(client, {"text": CODE, "task": "summarize"})
    assert body["expert_used"] == "moe-expert-longformer"


@pytest.mark.parametrize("name", ["longformer", "moe-expert-longformer"])
async def test_force_expert_by_name_or_gate_label(client, name) -> None:
    status, body = await post(
        client, {"text": CODE, "task": "embed", "options": {"force_expert": name}}
    )
    assert status == 200, body
    assert body["expert_used"] == "moe-expert-longformer"
    assert body["confidence"] == 1.0
    assert body["gate"] == "direct"


async def test_truncate_and_uppercase_post_process_text_results(client) -> None:
    options = {"max_tokens": 20, "truncate_length": 5, "to_uppercase": True}
    _, plain = await post(client, {"text": CODE, "options": {"max_tokens": 20}})
    _, shaped = await post(client, {"text": CODE, "options": options})
    assert len(plain["result"]) > 5
    assert shaped["result"] == plain["result"][:5].upper() + "..."


async def test_answers_are_cached_by_text_task_options_and_expert(client) -> None:
    _, first = await post(client, {"text": "abc-123", "task": "embed"})
    _, again = await post(client, {"text": "abc-123", "task": "embed"})
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["result"] == first["result"]
    assert again["gate"] == "features"
    other_expert = {"text": "abc-123", "task": "embed", "options": {"force_expert": "longformer"}}
    _, forced = await post(client, other_expert)
    assert forced["cached"] is False
    assert forced["expert_used"] == "moe-expert-longformer"
    # Forcing the expert the gate chose reuses the answer, with this request's routing.
    same_expert = {"text": "abc-123", "task": "embed", "options": {"force_expert": "byt5"}}
    _, forced = await post(client, same_expert)
    assert (forced["cached"], forced["gate"], forced["confidence"]) == (True, "direct", 1.0)
    assert forced["result"] == first["result"]
    _, other_task = await post(client, {"text": "abc-123", "task": "generate"})
    assert other_task["cached"] is False


async def test_text_that_is_really_bytes_is_flagged_and_goes_to_byt5(client) -> None:
    junk = bytes(range(256)).decode("latin-1")
    status, body = await post(client, {"text": junk, "task": "embed"})
    assert status == 200, body
    assert body["input_features"]["is_binary"] == 1.0
    assert body["expert_used"] == "moe-expert-byt5"


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({}, "text", "Missing required parameter: 'text'"),
        ({"text": 42}, "text", "Invalid value for 'text'"),
        ({"text": ["a"]}, "text", "Invalid value for 'text'"),
        ({"text": "   "}, "text", "'text' is empty"),
        ({"text": "x", "task": "translate"}, "task", "unknown task 'translate'"),
        ({"text": "x", "task": 3}, "task", "Invalid value for 'task'"),
        ({"text": "x", "options": {"force_expert": "gpt-9"}}, "options.force_expert", "gpt-9"),
        ({"text": "x", "options": {"colour": "red"}}, "options.colour", "Unknown parameter"),
        ({"text": "x", "options": {"max_tokens": 0}}, "options.max_tokens", "Invalid value"),
        ({"text": "x", "extra": 1}, "extra", "Unknown parameter"),
        (
            {"text": "x", "task": "summarize", "options": {"force_expert": "byt5"}},
            "task",
            "does not do task 'summarize'",
        ),
        (
            {"text": "x", "task": "embed", "options": {"to_uppercase": True}},
            "options",
            "apply to text results",
        ),
    ],
)
async def test_bad_bodies_get_a_400_naming_the_problem(client, body, param, message) -> None:
    status, answer = await post(client, body)
    assert status == 400, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]


async def test_binary_junk_and_wrong_shapes_are_a_clear_4xx(client) -> None:
    junk = os.urandom(512)
    response = await client.post(
        "/process", data=junk, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"
    response = await client.post("/process", data=junk, headers={"Content-Type": "image/png"})
    assert response.status == 415
    status, answer = await post(client, ["text"])
    assert status == 400
    assert "must be a JSON object" in answer["error"]["message"]


async def test_oversized_input_is_a_413(gateway, config) -> None:
    config["server"] = {"max_body_bytes": 4096, "frontends": {"process": {"max_text_chars": 100}}}
    client = await gateway(config)
    status, answer = await post(client, {"text": "a" * 101})
    assert status == 413
    assert answer["error"]["param"] == "text"
    assert "101 characters; the limit is 100" in answer["error"]["message"]
    status, answer = await post(client, {"text": "a" * 5000})
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"


async def test_health_carries_the_seed_fields(client) -> None:
    response = await client.get("/health")
    assert response.status == 200
    health = await response.json()
    assert health["status"] == "ok"
    assert health["models_loaded"] is True
    import torch

    assert health["cuda_available"] is torch.cuda.is_available()
    assert health["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


async def test_while_models_load_process_is_a_503_and_health_says_so(gateway) -> None:
    slow = {"kind": "echo", "load_delay_s": 30}
    client = await gateway(
        {
            "experts": {"moe-expert-byt5": slow, "moe-expert-longformer": slow},
            "gate": {
                "kind": "features",
                "experts": {"byt5": "moe-expert-byt5", "longformer": "moe-expert-longformer"},
            },
        },
        wait=False,
    )
    status, answer = await post(client, {"text": CODE})
    assert status == 503
    # The gate may still be loading too (the port opens before it does), or only the experts.
    message = answer["error"]["message"]
    assert "still loading" in message or "still starting" in message, message
    response = await client.get("/health")
    assert response.status == 503
    assert (await response.json())["models_loaded"] is False


async def test_concurrent_requests_get_the_answers_sequential_ones_get(gateway, config) -> None:
    config["server"] = {"frontends": {"process": {"cache_size": 0}}}
    client = await gateway(config)
    bodies = [{"text": f"id_{i} = lookup('{i:04x}')", "task": "embed"} for i in range(6)]
    bodies += [{"text": DOCUMENT + f" Item {i}.", "task": "embed"} for i in range(3)]
    sequential = [(await post(client, body))[1]["result"] for body in bodies]
    answers = await asyncio.gather(*(post(client, body) for body in bodies))
    assert all(status == 200 for status, _ in answers)
    assert [answer["result"] for _, answer in answers] == sequential


def test_example_config_names_the_seed_models(tiny_models) -> None:
    from pathlib import Path

    import yaml

    import moe_byt5

    example = Path(moe_byt5.__file__).parent / "examples" / "process.yaml"
    config = yaml.safe_load(example.read_text())
    assert set(config["experts"]) == {"moe-expert-byt5", "moe-expert-longformer"}
    assert config["gate"]["aliases"] == ["moe-auto"]
    assert config["experts"]["moe-expert-byt5"]["fallbacks"] == ["moe-expert-longformer"]
    assert service_config(tiny_models)["gate"] == config["gate"]


async def test_an_expert_that_cannot_embed_is_a_clear_502_not_a_crash(gateway) -> None:
    client = await gateway({"experts": {"chatty": {"kind": "echo", "card": {"capabilities": []}}}})
    status, answer = await post(client, {"text": "hello", "task": "process"})
    assert (status, answer["result"], answer["expert_used"]) == (200, "hello", "chatty")
    client = await gateway(
        {"experts": {"chatty": {"kind": "echo", "card": {"capabilities": ["embed"]}}}}
    )
    status, answer = await post(client, {"text": "hello", "task": "embed"})
    assert status == 502
    assert "answered task 'embed' with text" in answer["error"]["message"]
