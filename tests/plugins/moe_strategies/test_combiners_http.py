"""Every combiner over HTTP, streamed and not, with an expert that errors and one that hangs.

The answer must still come (200), from the experts that worked, and ``moe_metadata`` must name
the ones that failed. A hanging expert is cut off by its own ``timeout_s``.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import user

EXPERTS = {
    "good": {"kind": "echo", "reply": "#### 42"},
    "also_good": {"kind": "echo", "reply": "the answer is 42"},
    "broken": {"kind": "echo", "fail": "error"},
    "stuck": {"kind": "echo", "fail": "hang", "timeout_s": 0.1},
    "rambling_judge": {"kind": "echo", "reply": "Hard to say, they all have merits."},
    "dying_reasoner": {"kind": "echo", "prefix": "thinking: ", "fail_after_chunks": 2},
}

PARALLEL = ["good", "broken", "stuck", "also_good"]

CASES = {
    "first-success": {"experts": PARALLEL},
    "concat": {"experts": PARALLEL},
    "parallel-vote": {"experts": PARALLEL},
    "quality-weighted": {"experts": PARALLEL},
    "judge": {"experts": PARALLEL, "judge": "rambling_judge"},
    "mixture-of-agents": {"layers": [["broken", "stuck", "good"]], "aggregator": "also_good"},
    "cascade": {"experts": ["broken", "stuck", "good"]},
    "chain": {"preset": "reasoning-execution", "reasoner": "dying_reasoner", "executor": "good"},
}


def parse_stream(text: str) -> tuple[str, dict]:
    content, metadata = "", {}
    for line in text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        assert "error" not in chunk, chunk
        for choice in chunk["choices"]:
            content += choice["delta"].get("content") or ""
        metadata = chunk.get("moe_metadata", metadata)
    return content, metadata


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("kind", list(CASES))
async def test_combiners_answer_despite_failing_experts(gateway, kind, stream):
    client = await gateway({"experts": EXPERTS, "combiner": {"kind": kind, **CASES[kind]}})
    question = "what is six times seven? one two three"
    response = await client.post("/v1/chat/completions", json=user(question, stream=stream))
    assert response.status == 200, await response.text()
    if stream:
        content, metadata = parse_stream(await response.text())
    else:
        body = await response.json()
        content, metadata = body["choices"][0]["message"]["content"], body["moe_metadata"]
    assert "42" in content
    assert metadata["strategy"] == kind
    failed = {record["expert"] for record in metadata["fallbacks"]}
    expected = {
        # The good answer wins the race at once; the others are cancelled, not failed.
        "first-success": set(),
        # Only a stream sees the reasoner die; a complete answer is read whole first.
        "chain": {"dying_reasoner"} if stream else set(),
    }.get(kind, {"broken", "stuck"})
    assert expected <= failed, metadata["fallbacks"]
    if kind == "first-success":
        assert "stuck" not in failed
        assert metadata["notes"][0] in ("good answered first", "good streamed first")
    if "stuck" in failed:
        reason = next(r["error"] for r in metadata["fallbacks"] if r["expert"] == "stuck")
        assert "did not answer within 0.1 s" in reason
    if kind == "judge":
        assert "settled on no candidate" in metadata["notes"][0]
