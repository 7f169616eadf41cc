"""Which stream chunks that arrived together may leave as one: only text, of one choice, of one
model; nothing that carries anything else is ever merged away."""

from __future__ import annotations

from typing import Any

import pytest

from moe_openai_compat.reading import coalesced


def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    choice = {"index": extra.pop("index", 0), "delta": delta, "logprobs": None}
    choice["finish_reason"] = extra.pop("finish_reason", None)
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [choice],
        **extra,
    }


def texts(chunks: list[dict[str, Any]]) -> list[Any]:
    return [c["choices"][0]["delta"].get("content") if c["choices"] else None for c in chunks]


def test_a_run_of_text_becomes_one_chunk_with_the_opening_role():
    burst = [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo", "role": None}),
        chunk({}, finish_reason="stop"),
    ]
    out = coalesced(burst)
    assert texts(out) == ["Hello", None]
    assert out[-1]["choices"][0]["finish_reason"] == "stop"
    assert coalesced(burst[1:2]) == burst[1:2]  # alone, it leaves as it came


def with_logprobs() -> dict[str, Any]:
    special = chunk({"content": "x"})
    special["choices"][0]["logprobs"] = {"content": [{"token": "x", "logprob": -0.1}]}
    return special


SPECIALS = {
    "another choice": chunk({"content": "x"}, index=1),
    "another model": chunk({"content": "x"}, model="other"),
    "usage": chunk({"content": "x"}, usage={"prompt_tokens": 1}),
    "log-probabilities": with_logprobs(),
    "a tool call": chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}),
    "a refusal": chunk({"content": "x", "refusal": "no"}),
    "another role": chunk({"content": "x", "role": "tool"}),
    "a finish reason": chunk({"content": "x"}, finish_reason="length"),
}


@pytest.mark.parametrize("special", SPECIALS.values(), ids=SPECIALS.keys())
def test_a_chunk_with_anything_beside_text_is_never_merged(special):
    out = coalesced([chunk({"content": "a"}), special, chunk({"content": "b"})])
    assert len(out) == 3 and out[1] == special


def test_runs_on_either_side_of_another_chunk_join_separately():
    burst = [chunk({"content": "a"}), chunk({"content": "b"}), chunk({"content": "x"}, index=1)]
    burst += [chunk({"content": "c"}), chunk({"content": "d"})]
    assert texts(coalesced(burst)) == ["ab", "x", "cd"]
