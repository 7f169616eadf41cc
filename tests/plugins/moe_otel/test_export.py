"""Spans leave the gateway: over OTLP/HTTP to a collector, and as W3C ``traceparent`` to the
upstreams it calls."""

from __future__ import annotations

import signal

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import free_port, serving, user, wait_healthy
from tests.plugins.moe_otel.conftest import one

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}


class FakeCollector:
    """An OpenTelemetry collector's OTLP/HTTP traces endpoint: protobuf in, protobuf out."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        return app

    async def traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        self.exports.append(ExportTraceServiceRequest.FromString(await request.read()))
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def spans(self) -> list[tuple[str, dict, object]]:
        """(service.name, span name, span) of everything received."""
        found = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                service = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }.get("service.name")
                for scope in resource_spans.scope_spans:
                    found.extend((service, span.name, span) for span in scope.spans)
        return found


async def test_moe_serve_exports_spans_over_otlp_where_the_environment_says(tmp_path):
    collector = FakeCollector()
    collector_server = TestServer(collector.app(), host="127.0.0.1")
    upstream = TestServer(FakeOpenAI().app(), host="127.0.0.1")
    await collector_server.start_server()
    await upstream.start_server()
    port = free_port()
    config = {
        "server": {"port": port, "shutdown_timeout_s": 2, "access_log": False},
        "experts": {
            "remote": {"kind": "openai", "base_url": str(upstream.make_url("/v1")), "model": "m"}
        },
        "trackers": {},
    }
    url = f"http://127.0.0.1:{port}"
    try:
        with serving(
            config,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=str(collector_server.make_url("")).rstrip("/"),
            OTEL_SERVICE_NAME="moe-under-test",
        ) as gateway:
            await wait_healthy(url, gateway, timeout_s=90)
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{url}/v1/chat/completions", json=user("hi"), headers=CALLER) as got,
            ):
                assert got.status == 200
            # Stopping the gateway flushes the spans still queued for export.
            gateway.send_signal(signal.SIGTERM)
            assert gateway.wait(timeout=30) == 0
    finally:
        await upstream.close()
        await collector_server.close()
    received = collector.spans()
    assert {service for service, _, _ in received} == {"moe-under-test"}
    # The chat's spans continue the caller's trace (health checks make traces of their own).
    in_trace = {name for _, name, span in received if span.trace_id.hex() == TRACE_ID}
    assert {"POST /v1/chat/completions", "chat auto", "route", "chat remote"} <= in_trace
    call = next(span for _, name, span in received if name == "chat remote")
    attributes = {a.key: a.value for a in call.attributes}
    assert attributes["gen_ai.system"].string_value == "127.0.0.1"
    assert attributes["gen_ai.usage.input_tokens"].int_value == 1


async def test_the_upstream_receives_the_requests_trace_context(gateway, spans, fake_upstream):
    fake, base_url = fake_upstream
    config = {"otel": {}, "experts": {"remote": {"kind": "openai", "base_url": base_url}}}
    client = await gateway(config)
    response = await client.post("/v1/chat/completions", json=user("hi"), headers=CALLER)
    assert response.status == 200
    request = one(spans, "chat auto")
    sent = fake.headers[-1].get("traceparent") or fake.headers[-1].get("Traceparent")
    assert sent == f"00-{TRACE_ID}-{request.context.span_id:016x}-01"
