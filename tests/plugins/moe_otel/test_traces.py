"""A span per request, with the gate, every expert call and every tracker as its children."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, StatusCode

from moe_core.testing import make_moe
from tests.plugins.moe_otel.conftest import children, named, one

CHAT = "/v1/chat/completions"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}
CONFIG = {
    "otel": {},
    "experts": {
        "flaky": {"kind": "echo", "fail": "error", "fallbacks": ["steady"]},
        "steady": {"kind": "echo", "card": {"provider": "acme"}},
    },
    "gate": {"kind": "fixed", "expert": "flaky"},
    "trackers": {"memory": {"kind": "memory"}, "perf": {"kind": "performance"}},
    "tracking": {"store": "memory"},
}


def chat(text: str = "three little words", **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


async def test_a_request_is_a_tree_of_spans_in_the_callers_trace(gateway, spans):
    client = await gateway(CONFIG)
    response = await client.post(CHAT, json=chat(max_tokens=50, temperature=0.5), headers=CALLER)
    assert response.status == 200
    body = await response.json()

    server = one(spans, "POST /v1/chat/completions")
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE_ID, "the caller's trace goes on"
    assert server.parent is not None and format(server.parent.span_id, "016x") == "b7ad6b7169203331"
    assert server.attributes["http.route"] == CHAT
    assert server.attributes["http.response.status_code"] == 200

    request = one(spans, "chat auto")
    assert request.parent.span_id == server.context.span_id
    attributes = request.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "auto"
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.response.model"] == "steady"
    assert attributes["gen_ai.response.id"] == body["id"]
    assert attributes["gen_ai.usage.input_tokens"] == body["usage"]["prompt_tokens"] == 3
    assert attributes["gen_ai.usage.output_tokens"] == body["usage"]["completion_tokens"] == 3
    assert attributes["moe.fallbacks"] == ("flaky",)
    assert request.status.status_code is StatusCode.UNSET

    below = children(spans, request)
    names = sorted(span.name for span in below)
    assert names.count("route") == 1
    assert {"chat flaky", "chat steady"} <= set(names)
    # Every tracker's work on every event it wants (the performance tracker wants all four).
    assert names.count("tracker perf") == 4
    assert names.count("tracker memory") == 3  # three events: two expert calls, the end
    assert all(span.context.trace_id == request.context.trace_id for span in below)

    route = one(spans, "route")
    assert route.attributes["moe.gate"] == "fixed"
    assert route.attributes["moe.experts"] == ("flaky",)
    assert route.attributes["moe.confidence"] == 1.0
    assert route.end_time <= min(s.start_time for s in below if s.name.startswith("chat "))

    failed, answered = one(spans, "chat flaky"), one(spans, "chat steady")
    for call in (failed, answered):
        assert call.kind is SpanKind.CLIENT
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.request.max_tokens"] == 50
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "upstream_error"
    assert "failed as configured" in failed.status.description
    assert answered.attributes["gen_ai.system"] == "acme"
    assert answered.attributes["gen_ai.provider.name"] == "acme"
    assert answered.attributes["gen_ai.request.model"] == "steady"
    assert answered.attributes["gen_ai.usage.input_tokens"] == 3
    assert answered.attributes["gen_ai.usage.output_tokens"] == 3
    assert failed.end_time <= answered.start_time
    assert request.start_time <= failed.start_time and answered.end_time <= request.end_time
    for tracker in named(spans, "tracker perf"):
        assert request.start_time <= tracker.start_time <= tracker.end_time <= request.end_time


async def test_a_streamed_answer_has_its_expert_span_and_ends_its_request_span(gateway, spans):
    client = await gateway({**CONFIG, "gate": {"kind": "fixed", "expert": "steady"}})
    response = await client.post(CHAT, json=chat(stream=True))
    assert "data: [DONE]" in await response.text()
    call = one(spans, "chat steady")
    assert call.attributes["moe.streamed"] is True
    assert call.attributes["gen_ai.usage.output_tokens"] == 3
    request = one(spans, "chat auto")
    assert request.attributes["gen_ai.request.stream"] is True
    assert call.parent.span_id == request.context.span_id


async def test_a_refused_request_is_an_error_span_with_its_code(gateway, spans):
    client = await gateway(CONFIG)
    response = await client.post(CHAT, json=chat(model="nobody"))
    assert response.status == 404
    request = one(spans, "chat unknown")  # what the client named is an attribute, not a name
    assert request.attributes["gen_ai.request.model"] == "nobody"
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes["error.type"] == "model_not_found"
    route = one(spans, "route")
    assert route.status.status_code is StatusCode.ERROR
    server = one(spans, "POST /v1/chat/completions")
    assert server.attributes["http.response.status_code"] == 404
    assert named(spans, "chat flaky") == named(spans, "chat steady") == []


async def test_the_python_api_traces_without_a_server(spans):
    moe = make_moe({**CONFIG, "trackers": {}})
    async with moe:
        answer = await moe.complete(chat(), request_id="abc")
    assert answer.model == "steady"
    request = one(spans, "chat auto")
    assert request.parent is None
    assert request.attributes["moe.request_id"] == "abc"
    assert len(named(spans, "chat steady")) == 1


async def test_without_an_otel_section_or_environment_nothing_is_traced(
    gateway, spans, monkeypatch
):
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    config = {key: value for key, value in CONFIG.items() if key != "otel"}
    client = await gateway(config)
    assert (await client.post(CHAT, json=chat(), headers=CALLER)).status == 200
    assert spans.get_finished_spans() == ()
    assert "otel" not in make_moe(config).trackers
    disabled = make_moe({**CONFIG, "otel": {"enabled": False}})
    assert "otel" not in disabled.trackers


def test_the_standard_environment_variables_turn_tracing_on(monkeypatch):
    config = {key: value for key, value in CONFIG.items() if key != "otel"}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert "otel" in make_moe(config).trackers
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert "otel" not in make_moe(config).trackers
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert "otel" in make_moe(config).trackers
