"""Fuzzing every endpoint that reads a body: whatever a client sends, the answer is a 2xx or a
4xx in the wire format's error envelope, never a 5xx, and the gateway keeps serving others.

Bodies come from :mod:`tests.faults.shapes` (each endpoint's valid bodies, the same with one
thing broken, and bodies of no shape at all); path parameters and query strings of every other
route are fuzzed too, and so are multipart uploads. Hypothesis runs derandomized with a fixed
number of examples per endpoint, so CI sees the same inputs on every run, and the edge cases
below always run. A failure prints the smallest body found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.faults.fuzzgateway import FuzzGateway, check_answer
from tests.faults.shapes import BODY_OF, as_bytes, bodies, json_values, raw_garbage, text

EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)
REQUIRED = {
    "/v1/chat/completions",
    "/v1/route",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/feedback",
    "/v1/ab-tests",
    "/v1/files",
    "/predict",
    "/process",
    "/-/reload",
}
MULTIPART = ("/v1/files", "/files/upload")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# What an HTTP client can send in a header at all: visible ASCII and Latin-1, no controls.
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    | st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
    max_size=300,
)
content_types = st.sampled_from(
    ["application/json"] * 6
    + ["application/json; charset=utf-8", "text/plain", "", "application/x-www-form-urlencoded"]
)
HI = [{"role": "user", "content": "hi"}]
EDGE_CASES: dict[str, list[Any]] = {
    "/v1/chat/completions": [
        {"messages": HI, "seed": 2**100},
        {"messages": HI, "n": 2**64},
        {"messages": HI, "max_tokens": 2**63},
        {"messages": [{"role": "user", "content": "\ud800"}]},
        {"messages": HI, "moe": {"strategy": "judge"}},
        {"messages": HI, "moe": {"strategy": "multimodal"}, "stream": True},
        {"messages": HI, "stream": True, "n": 3},
    ],
    "/v1/embeddings": [{"input": "x", "dimensions": 2**100}, {"input": [""]}],
    "/v1/ab-tests": [{"expert_a": "echo", "expert_b": "other", "min_samples": 2**100}],
    "/process": [{"text": "hello", "task": "embed"}],
    "/process/sync": [{"text": "hello", "task": "embed", "options": {"force_expert": "echo"}}],
    "/predict": [{"query": "x", "max_tokens": 2**100}],
    "/v1/messages": [{"model": "auto", "max_tokens": 2**64, "messages": HI}],
}


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[FuzzGateway]:
    """A fresh gateway per test: what one endpoint's fuzzing leaves behind stays with it."""
    gateway = FuzzGateway(tmp_path)
    yield gateway
    gateway.close()


READS = ["/health", "/v1/models", "/-/stats", "/v1/routing/stats", "/v1/ab-tests", "/v1/files"]


def still_serving(gateway: FuzzGateway) -> None:
    """After everything the fuzzer sent, other clients are served as usual: a chat request is
    answered, and the routes that read the stored state answer 200."""
    body = json.dumps({"messages": [{"role": "user", "content": "still there?"}]}).encode()
    status, _, answer = gateway.request(
        "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"}
    )
    assert status == 200, answer
    # Either expert: a fuzzed A/B test between the two may be running and split the traffic.
    content = json.loads(answer)["choices"][0]["message"]["content"]
    assert content in ("echo: still there?", "other: still there?")
    for path in READS:
        status, _, answer = gateway.request("GET", path)
        assert status == 200, f"GET {path} after fuzzing: {status} {answer[:300]!r}"


def test_every_endpoint_the_issue_names_is_mounted_and_fuzzed(fuzzed: FuzzGateway):
    paths = {path for method, path in fuzzed.routes() if method in BODY_METHODS}
    assert paths >= REQUIRED, f"not mounted: {REQUIRED - paths}"
    assert set(BODY_OF) | set(MULTIPART) | {"/-/reload"} >= REQUIRED


@pytest.mark.parametrize("path", sorted(BODY_OF))
def test_json_endpoint_answers_every_body_without_a_5xx(fuzzed: FuzzGateway, path: str):
    assert ("POST", path) in fuzzed.routes()

    @FUZZ
    @given(body=bodies(BODY_OF[path]), content_type=content_types, key=st.none() | header_values)
    def one(body: bytes, content_type: str, key: str | None) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        if key is not None and path == "/v1/feedback":
            headers["Idempotency-Key"] = key
        check_answer(path, *fuzzed.request("POST", path, body, headers))

    for edge in EDGE_CASES.get(path, []):
        one = example(body=as_bytes(edge), content_type="application/json", key=None)(one)
    one()
    still_serving(fuzzed)


def fill(template: str, segment: str) -> str:
    """A route's path with every ``{parameter}`` replaced by ``segment``, percent-encoded."""
    quoted = quote(segment.encode("utf-8", "surrogatepass"), safe="") or "x"
    return "/".join(quoted if p.startswith("{") else p for p in template.split("/"))


def test_every_other_route_with_a_body_survives_garbage(fuzzed: FuzzGateway):
    """Routes with no JSON shape of their own (a reload, a breaker reset, an A/B test's stop,
    and any route a newer plugin adds) get garbage bodies and fuzzed path parameters."""
    routes = sorted(
        (method, path)
        for method, path in fuzzed.routes()
        if method in BODY_METHODS and path not in BODY_OF and path not in MULTIPART
    )
    assert ("POST", "/-/reload") in routes
    garbage = raw_garbage | json_values.map(as_bytes)

    @FUZZ
    @given(route=st.sampled_from(routes), segment=text, body=garbage)
    def one(route: tuple[str, str], segment: str, body: bytes) -> None:
        method, template = route
        headers = {"Content-Type": "application/json"}
        check_answer(template, *fuzzed.request(method, fill(template, segment), body, headers))

    one()
    still_serving(fuzzed)


def test_every_route_without_a_body_answers_fuzzed_paths_and_queries(fuzzed: FuzzGateway):
    routes = sorted(
        (method, path)
        for method, path in fuzzed.routes()
        if method in ("GET", "DELETE") and not path.startswith("/ui")
    )
    queries = st.dictionaries(
        st.sampled_from(["limit", "after", "order", "purpose", "task_type", "window", "x"]),
        text | st.integers(-5, 2**70).map(str),
        max_size=3,
    )

    @FUZZ
    @given(route=st.sampled_from(routes), segment=text, query=queries)
    def one(route: tuple[str, str], segment: str, query: dict[str, str]) -> None:
        method, template = route
        encoded = {k: v.encode("utf-8", "surrogatepass") for k, v in query.items()}
        path = fill(template, segment) + ("?" + urlencode(encoded) if encoded else "")
        check_answer(template, *fuzzed.request(method, path))

    one()
    still_serving(fuzzed)


@st.composite
def multipart(draw: st.DrawFn) -> tuple[bytes, str]:
    """A multipart/form-data body: ``file`` and ``purpose`` parts (or others) with fuzzed
    names, file names and contents, now and then cut short or with a wrong boundary."""
    boundary = "fuzzboundary"
    chunks = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["file", "purpose", "other", ""]))
        filename = draw(st.none() | text)
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        if name == "purpose":
            content = draw(st.sampled_from([b"user_data", b"assistants", b"nonsense", b""]))
        else:
            content = draw(
                st.sampled_from([b"plain text\n", b"%PDF-1.4 not really", b"\x89PNG\r\n"])
                | st.binary(max_size=64)
            )
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        chunks.append(head.encode("utf-8", "surrogatepass") + b"\r\n" + content + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    cut = draw(st.none() | st.integers(0, max(0, len(body) - 1)))
    if cut is not None:
        body = body[:cut]
    sent_boundary = draw(st.sampled_from([boundary, boundary, "other", ""]))
    return body, f"multipart/form-data; boundary={sent_boundary}"


@pytest.mark.parametrize("path", list(MULTIPART))
def test_file_upload_answers_every_multipart_body_without_a_5xx(fuzzed: FuzzGateway, path: str):
    @FUZZ
    @given(upload=multipart() | st.tuples(raw_garbage, content_types))
    @example(upload=(b"--b\r\nC", "multipart/form-data; boundary=b"))
    def one(upload: tuple[bytes, str]) -> None:
        body, content_type = upload
        headers = {"Content-Type": content_type} if content_type else {}
        check_answer(path, *fuzzed.request("POST", path, body, headers))

    one()
    still_serving(fuzzed)
