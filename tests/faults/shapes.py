"""Hypothesis strategies for the bodies of the gateway's JSON endpoints.

Each endpoint has a strategy for *valid* bodies (every field a value the API accepts, edge
values included). :func:`bodies` draws from it, and as often breaks what it drew: one value
somewhere in the body replaced by anything at all (wrong types, integers past 64 bits, nulls,
empty arrays, deep nesting, lone surrogates), a field removed or an unknown one added; or it
sends a JSON value of no shape, or bytes that are no JSON at all. Valid bodies reach the code
behind the validation (routing, combiners, trackers, stores); broken ones probe the validation.
Both must end in a 2xx or a 4xx envelope.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

EXPERTS = ["echo", "other", "vectors"]
COMBINERS = [
    "single",
    "first-success",
    "concat",
    "chain",
    "cascade",
    "mixture-of-agents",
    "parallel-vote",
    "quality-weighted",
    "judge",
    "multimodal",
]
HUGE = [2**31, 2**63, 2**64, 2**100, -(2**100), 10**30]

# Mostly ordinary text; now and then the odd characters clients send: control characters,
# emoji, and (through JSON's \u escapes) lone surrogates, which no UTF-8 encoder accepts.
odd = st.characters() | st.sampled_from("\x00\ud800\udfff\u202e\U0001f600")
odd_text = st.text(odd, max_size=24)
text = st.text(st.characters(codec="ascii"), min_size=1, max_size=24) | odd_text
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**31), 2**31)
    | st.sampled_from(HUGE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> st.SearchStrategy:
    return st.fixed_dictionaries(required, optional=optional or {})


def nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


raw_garbage = st.one_of(
    st.binary(max_size=48),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"null",
            b"[]",
            b'"a string"',
            b"{",
            b'{"messages": NaN}',
            b"\xef\xbb\xbf{}",
            b'{"model": "\xff\xfe"}',
            b'{"a": 1, "a": 2}',
        ]
    ),
    st.builds(nested, st.integers(1, 4000), st.sampled_from(["[", '{"a":'])),
)

unit = st.floats(0, 1)
tokens = st.integers(1, 64) | st.just(2**31 - 1)
hints = obj(
    {},
    {
        "force_expert": st.sampled_from(EXPERTS),
        "strategy": st.sampled_from(COMBINERS),
        "task_type": st.sampled_from(["chat", "code", "embed", "summarize", "math"]),
        "budget_usd": st.floats(0, 1),
        "quality_requirement": unit,
        "latency_requirement_ms": st.floats(1, 10_000),
        "cache": st.booleans(),
        "metadata": st.dictionaries(text, text, max_size=2),
    },
)
image_url = st.sampled_from(
    ["data:image/png;base64,iVBORw0KGgo=", "data:,", "data:image/png;base64,@@", "file-none"]
)
part = st.one_of(
    obj({"type": st.just("text"), "text": text}),
    obj({"type": st.just("image_url"), "image_url": obj({"url": image_url})}),
    obj(
        {
            "type": st.just("input_audio"),
            "input_audio": obj({"data": text, "format": st.sampled_from(["wav", "mp3"])}),
        }
    ),
    obj({"type": st.just("file"), "file": obj({"file_id": text})}),
)
message = obj(
    {
        "role": st.sampled_from(["user"] * 4 + ["system", "assistant", "developer"]),
        "content": text | st.lists(part, min_size=1, max_size=3),
    },
    {"name": text},
)
tool = obj(
    {
        "type": st.just("function"),
        "function": obj({"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True)}),
    },
    {},
)
chat = obj(
    {"messages": st.lists(message, min_size=1, max_size=3)},
    {
        "model": st.sampled_from(["auto", "moe-auto", *EXPERTS]),
        "stream": st.booleans(),
        "stream_options": obj({}, {"include_usage": st.booleans()}),
        "temperature": st.floats(0, 2),
        "top_p": unit,
        "n": st.integers(1, 3),
        "max_tokens": tokens,
        "max_completion_tokens": tokens,
        "seed": st.integers(-(2**63), 2**63 - 1),
        "stop": text | st.lists(text, max_size=4),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "logit_bias": st.dictionaries(st.integers(0, 50_000).map(str), st.integers(-100, 100)),
        "logprobs": st.booleans(),
        "top_logprobs": st.integers(0, 20),
        "user": text,
        "metadata": st.dictionaries(text, text, max_size=2),
        "response_format": obj({"type": st.sampled_from(["text", "json_object"])}),
        "tools": st.lists(tool, min_size=1, max_size=2),
        "tool_choice": st.sampled_from(["auto", "none"]),
        "parallel_tool_calls": st.booleans(),
        "moe": hints,
    },
)
embeddings = obj(
    {"input": text | st.lists(text, min_size=1, max_size=4)},
    {
        "model": st.sampled_from(["auto", "vectors"]),
        "encoding_format": st.sampled_from(["float", "base64"]),
        "dimensions": st.integers(1, 64),
        "user": text,
    },
)
response_item = obj(
    {"role": st.sampled_from(["user", "assistant", "system", "developer"]), "content": text},
    {"type": st.just("message")},
)
responses = obj(
    {"input": text | st.lists(response_item, min_size=1, max_size=3)},
    {
        "model": st.sampled_from(["auto", "echo", "other"]),
        "instructions": text,
        "stream": st.booleans(),
        "store": st.booleans(),
        "max_output_tokens": tokens,
        "temperature": st.floats(0, 2),
        "text": obj({"format": obj({"type": st.just("text")})}),
        "metadata": st.dictionaries(text, text, max_size=3),
        "moe": hints,
    },
)
block = st.one_of(
    obj({"type": st.just("text"), "text": text}),
    obj(
        {
            "type": st.just("image"),
            "source": obj(
                {
                    "type": st.just("base64"),
                    "media_type": st.just("image/png"),
                    "data": st.just("iVBORw0KGgo="),
                }
            ),
        }
    ),
    obj({"type": st.just("tool_use"), "id": text, "name": text, "input": obj({})}),
    obj({"type": st.just("tool_result"), "tool_use_id": text}, {"content": text}),
)
anthropic_fields = {
    "model": st.sampled_from(["auto", "echo", "other"]),
    "messages": st.lists(
        obj({"role": st.just("user"), "content": text | st.lists(block, min_size=1)}),
        min_size=1,
        max_size=2,
    ),
}
anthropic_optional = {
    "system": text,
    "stream": st.booleans(),
    "temperature": st.floats(0, 1),
    "top_p": unit,
    "top_k": st.integers(1, 500),
    "stop_sequences": st.lists(text, max_size=3),
    "metadata": obj({}, {"user_id": text}),
}
messages = obj({**anthropic_fields, "max_tokens": tokens}, anthropic_optional)
count_tokens = obj(anthropic_fields, anthropic_optional)
feedback = obj(
    {"request_id": st.sampled_from(["chatcmpl-known", "unknown-id", "req-1"])},
    {
        "outcome": st.sampled_from(["success", "partial", "failure"]),
        "quality_score": unit,
        "rating": st.integers(1, 5),
        "pr_merged": st.booleans(),
        "pr_reverted": st.booleans(),
        "comment": text,
        "expert": st.sampled_from(EXPERTS),
        "task_type": text,
    },
).filter(lambda body: len(body) > 1)  # at least one judgement
ab_test = obj(
    {"expert_a": st.just("echo"), "expert_b": st.sampled_from(["other", "vectors"])},
    {
        "task_type": text,
        "traffic_split": st.floats(0.01, 0.99),
        "min_samples": st.integers(2, 100),
        "duration_days": st.floats(0.01, 30),
    },
)
predict = obj({"query": text}, {"max_tokens": tokens})
process = obj(
    {"text": text},
    {
        "task": st.sampled_from(["process", "embed"]),
        "options": obj(
            {},
            {
                "force_expert": st.sampled_from(EXPERTS),
                "max_tokens": tokens,
                "truncate_length": st.integers(1, 20),
                "to_uppercase": st.booleans(),
            },
        ),
    },
)


def places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON value, the value itself (``()``) included."""
    found = [path]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += places(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += places(inner, (*path, index))
    return found


@st.composite
def broken(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A valid body with one thing wrong: a value replaced by anything, a field removed, or an
    unknown field added (at the top or in any object inside)."""
    body = draw(valid)
    path = draw(st.sampled_from(places(body)))
    if not path:
        return draw(json_values)
    *parents, last = path
    container = body
    for step in parents:
        container = container[step]
    action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if action == "replace":
        container[last] = draw(json_values | st.sampled_from(HUGE) | st.just([]) | st.none())
    elif action == "remove":
        del container[last]
    elif isinstance(container, dict):
        container[draw(text)] = draw(json_values)
    return body


def as_bytes(value: Any) -> bytes:
    """JSON as a client library writes it (lone surrogates become ``\\ud800`` escapes)."""
    return json.dumps(value).encode()


@st.composite
def bodies(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> bytes:
    """Of six bodies: two valid, two with one thing wrong, one JSON value of no shape, one that
    is no JSON at all."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(raw_garbage)
    if kind == 1:
        return as_bytes(draw(json_values))
    return as_bytes(draw(broken(valid) if kind < 4 else valid))


BODY_OF: dict[str, st.SearchStrategy[Any]] = {
    "/v1/chat/completions": chat,
    "/openai": chat,
    "/v1/route": chat,
    "/v1/embeddings": embeddings,
    "/v1/responses": responses,
    "/v1/messages": messages,
    "/v1/messages/count_tokens": count_tokens,
    "/v1/feedback": feedback,
    "/v1/ab-tests": ab_test,
    "/predict": predict,
    "/predict/": predict,
    "/process": process,
    "/process/sync": process,
}
"""The valid bodies of every endpoint that reads JSON."""
