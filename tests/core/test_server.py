"""The HTTP layer: request ids, OpenAI error envelopes for every failure, body limits, auth."""

from __future__ import annotations

import asyncio
import gzip
import time

import orjson
import pytest
from aiohttp import web as aiohttp_web

from moe_core.builtins.fixed import FixedGate, FixedGateOptions
from moe_core.plugins import Register, hookimpl
from moe_core.server import create_app
from moe_core.testing import make_moe
from tests.conftest import free_port, user

ECHO = {"experts": {"echo": {"kind": "echo"}}}


def assert_envelope(body: dict, code: str | None = None) -> dict:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code
    return error


async def test_request_id_is_generated_or_echoed(gateway):
    client = await gateway(ECHO)
    response = await client.post("/v1/chat/completions", json=user("hi"))
    generated = response.headers["X-Request-Id"]
    assert len(generated) == 32
    assert (await response.json())["moe_metadata"]["request_id"] == generated
    response = await client.post(
        "/v1/chat/completions", json=user("hi"), headers={"X-Request-Id": "trace-123"}
    )
    assert response.headers["X-Request-Id"] == "trace-123"
    assert (await response.json())["id"] == "chatcmpl-trace-123"
    # An id that could inject into logs or headers is replaced, not echoed.
    response = await client.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert response.headers["X-Request-Id"] != "bad id\twith spaces"


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "fragment"),
    [
        (b'{"messages": [', None, 400, "invalid_json", "could not parse the JSON"),
        (b"", None, 400, "invalid_json", "empty"),
        (b"   ", None, 400, "invalid_json", "empty"),
        (b"[1, 2]", None, 400, "invalid_json", "must be a JSON object"),
        (b'{"model": "auto"}', None, 400, None, "Missing required parameter: 'messages'"),
        (b'{"messages": []}', None, 400, "invalid_value", "'messages'"),
        (b'{"messages": "hello"}', None, 400, "invalid_value", "valid array"),
        (
            b'{"messages": [{"role": "wizard", "content": "x"}]}',
            None,
            400,
            "invalid_value",
            "'messages[0].role'",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            None,
            400,
            "invalid_value",
            "'temperature'",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            None,
            400,
            "invalid_value",
            "'max_tokens'",
        ),
        (
            b'{"messages": [{"role": "user", "content": []}]}',
            None,
            400,
            "invalid_value",
            "'messages[0].content': an empty array",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            None,
            400,
            "invalid_value",
            "'stream'",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "n": 3}',
            None,
            400,
            "unsupported_parameter",
            "'n'",
        ),
        (
            b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
            None,
            404,
            "model_not_found",
            "'nope' does not exist",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}]}',
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
            "application/json",
        ),
    ],
)
async def test_bad_input_gets_a_clear_4xx_in_the_openai_envelope(
    gateway, body, headers, status, code, fragment
):
    client = await gateway(ECHO)
    response = await client.post(
        "/v1/chat/completions",
        data=body,
        headers=headers or {"Content-Type": "application/json"},
    )
    assert response.status == status
    error = assert_envelope(await response.json(), code)
    assert fragment in error["message"]


async def test_unknown_routes_and_methods_use_the_envelope(gateway):
    client = await gateway(ECHO)
    response = await client.get("/v1/nothing-here")
    assert response.status == 404
    assert (
        "Unknown request URL: GET /v1/nothing-here"
        in assert_envelope(await response.json())["message"]
    )
    response = await client.get("/v1/chat/completions")
    assert response.status == 405 and response.headers["Allow"] == "POST"
    assert_envelope(await response.json(), "method_not_allowed")


async def test_oversized_body_is_413(gateway):
    client = await gateway({**ECHO, "server": {"max_body_bytes": 2048}})
    big = user("x" * 5000)
    response = await client.post("/v1/chat/completions", json=big)
    assert response.status == 413
    assert (
        "limit is 2048 bytes"
        in assert_envelope(await response.json(), "payload_too_large")["message"]
    )

    # Without a Content-Length (chunked upload), the limit still holds while reading.
    async def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        yield b"y" * 5000
        yield b'"}]}'

    response = await client.post(
        "/v1/chat/completions", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert_envelope(await response.json(), "payload_too_large")


async def test_bearer_keys_when_configured(gateway, monkeypatch):
    monkeypatch.setenv("TEST_GATEWAY_KEYS", "secret-one,secret-two")
    client = await gateway({**ECHO, "server": {"api_keys_env": "TEST_GATEWAY_KEYS"}})
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 401
    assert_envelope(await response.json(), "invalid_api_key")
    response = await client.post(
        "/v1/chat/completions", json=user("hi"), headers={"Authorization": "Bearer wrong"}
    )
    assert response.status == 401
    response = await client.post(
        "/v1/chat/completions", json=user("hi"), headers={"Authorization": "Bearer secret-two"}
    )
    assert response.status == 200
    # Load balancers probe /health without a key.
    assert (await client.get("/health")).status == 200


async def test_non_ascii_bearer_keys_are_compared_not_crashed_on(gateway, monkeypatch):
    monkeypatch.setenv("TEST_GATEWAY_KEYS", "secret-one,clé")
    client = await gateway({**ECHO, "server": {"api_keys_env": "TEST_GATEWAY_KEYS"}})
    for key, status in [("clé", 200), ("naïve", 401), ("cle", 401)]:
        response = await client.post(
            "/v1/chat/completions", json=user("hi"), headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status == status
        if status == 401:
            error = assert_envelope(await response.json(), "invalid_api_key")
            assert error["message"] == "Incorrect API key provided."
    # A key whose bytes are not UTF-8 at all (the HTTP client above always sends UTF-8).
    body = orjson.dumps(user("hi"))
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer cl\xe9\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 401 ")


async def test_a_body_that_is_not_in_its_content_encoding_is_a_400(gateway):
    client = await gateway(ECHO)
    body = orjson.dumps(user("hi"))
    gzipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = await client.post("/v1/chat/completions", data=body, headers=gzipped)
    assert response.status == 400
    error = assert_envelope(await response.json(), "invalid_encoding")
    assert "Content-Encoding (gzip)" in error["message"]
    # aiohttp reads nothing more from that connection: the client is told to open a new one, so
    # its next request works.
    assert response.headers["Connection"] == "close"
    assert (await client.post("/v1/chat/completions", json=user("hi"))).status == 200
    response = await client.post("/v1/chat/completions", data=gzip.compress(body), headers=gzipped)
    assert response.status == 200


async def test_health_reports_loading_then_ready_and_calls_meanwhile_get_503(gateway):
    # Long enough that the first /health (which may import torch to ask about CUDA) is done first.
    client = await gateway({"experts": {"slow": {"kind": "echo", "load_delay_s": 3}}}, wait=False)
    response = await client.get("/health")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "loading"
    assert body["experts"]["slow"]["state"] in ("idle", "loading")  # idle: not yet started
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 503 and response.headers["Retry-After"]
    error = assert_envelope(await response.json())
    # The expert is loading (or, on a slow machine, the gate has not finished starting yet).
    assert error["code"] in ("expert_unavailable", "gateway_loading")
    assert "still loading" in error["message"] or "still starting" in error["message"]
    for _ in range(200):
        await asyncio.sleep(0.05)
        response = await client.get("/health")
        if response.status == 200:
            break
    body = await response.json()
    assert body["status"] == "ok" and body["experts"]["slow"]["state"] == "ready"


class SlowGate(FixedGate):
    """A gate whose model takes a while to load (as an embedding gate's does)."""

    async def start(self) -> None:
        await asyncio.sleep(3)  # longer than a cold first /health takes


class SlowGatePlugin:
    @hookimpl
    def moe_register_gates(self, register: Register) -> None:
        register("slow-gate", SlowGate, options=FixedGateOptions)


async def test_the_port_answers_while_the_gate_loads_and_readiness_waits_for_it(gateway):
    config = {
        "experts": {"a": {"kind": "echo"}, "b": {"kind": "echo", "load_delay_s": 4}},
        "gate": {"kind": "slow-gate", "expert": "a"},
    }
    client = await gateway(config, plugins=[("slow", SlowGatePlugin())], wait=False)
    assert (await client.get("/health/live")).status == 200
    response = await client.get("/health")
    assert response.status == 503 and response.headers["Retry-After"]
    body = await response.json()
    assert body["status"] == "loading" and body["gate"] == "loading"
    assert body["progress"] == {"experts_ready": 0, "experts": 2}
    chat = await client.post("/v1/chat/completions", json=user("hi"))
    assert chat.status == 503 and chat.headers["Retry-After"] == "5"
    assert assert_envelope(await chat.json(), "gateway_loading")
    states = []
    for _ in range(200):
        await asyncio.sleep(0.05)
        body = await (await client.get("/health")).json()
        states.append((body["gate"], body["progress"]["experts_ready"], body["status"]))
        if body["status"] == "ok":
            break
    # The gate is ready (and `a` answers) before `b` has loaded: still `loading`, not ready.
    assert ("ready", 1, "loading") in states
    assert states[-1] == ("ready", 2, "ok")
    assert (await client.post("/v1/chat/completions", json=user("hi"))).status == 200


async def test_an_expert_that_fails_to_load_is_reported_and_the_others_serve(gateway):
    client = await gateway(
        {
            "experts": {
                "broken": {
                    "kind": "echo",
                    "load_error": "weights are corrupt",
                    "fallbacks": ["ok"],
                },
                "ok": {"kind": "echo"},
            }
        }
    )
    health = await (await client.get("/health")).json()
    assert health["status"] == "degraded"
    assert "weights are corrupt" in health["experts"]["broken"]["error"]
    body = await (await client.post("/v1/chat/completions", json=user("hi"))).json()
    assert body["moe_metadata"]["experts_used"] == ["ok"]
    assert "failed to load" in body["moe_metadata"]["fallbacks"][0]["error"]


async def test_plugins_and_stats_endpoints(gateway):
    client = await gateway(ECHO)
    plugins = await (await client.get("/-/plugins")).json()
    by_name = {plugin["name"]: plugin for plugin in plugins}
    assert by_name["fixed"]["kinds"]["gate"] == ["fixed"]
    assert by_name["router"]["kinds"]["gate"] == ["multi-factor"]
    assert by_name["tracking"]["sections"] == ["tracking"]
    assert by_name["openai-compat"]["distribution"] == "moe-openai-compat"
    assert by_name["openai-compat"]["version"]
    assert "moe_register_experts" in by_name["openai-compat"]["hooks"]
    await client.post("/v1/chat/completions", json=user("one two"))
    stats = await (await client.get("/-/stats")).json()
    assert stats["memory"]["experts"]["echo"]["calls"] == 1
    assert stats["memory"]["requests"] == 1


async def test_an_unexpected_exception_is_a_500_envelope_without_a_traceback(gateway):
    from moe_core import Frontend, hookimpl

    class Buggy(Frontend):
        def setup(self, app):
            async def crash(request):
                raise KeyError("internal detail")

            app.router.add_get("/crash", crash)

    class BuggyPlugin:
        @hookimpl
        def moe_register_frontends(self, register):
            register("buggy", Buggy)

    client = await gateway(ECHO, plugins=[("buggy", BuggyPlugin())])
    response = await client.get("/crash")
    assert response.status == 500
    error = assert_envelope(await response.json(), "internal_error")
    assert "internal detail" not in error["message"]
    assert response.headers["X-Request-Id"] in error["message"]


@pytest.mark.parametrize("path", ["/healthz", "/wp-admin", "/What%20is%20a%20star"])
async def test_an_unmatched_get_is_a_404_and_starts_no_generation(gateway, path):
    client = await gateway(ECHO)
    response = await client.get(path)
    assert response.status == 404
    assert_envelope(await response.json(), "not_found")
    stats = await (await client.get("/-/stats")).json()
    assert stats["memory"]["requests"] == 0


async def test_serving_freezes_startup_objects_and_collects_young_ones_less_often():
    import gc

    from moe_core.server import GC_FIRST_GENERATION_THRESHOLD, tune_garbage_collector

    before = gc.get_threshold()
    try:
        await tune_garbage_collector()
        assert gc.get_threshold()[0] == max(before[0], GC_FIRST_GENERATION_THRESHOLD)
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_a_fallbacks_streamed_chunks_carry_the_fallbacks_name(gateway):
    config = {
        "experts": {
            "primary": {"kind": "echo", "fail": "error", "fallbacks": ["backup"]},
            "backup": {"kind": "echo"},
        },
        "gate": {"kind": "fixed", "expert": "primary"},
    }
    client = await gateway(config)
    response = await client.post("/v1/chat/completions", json=user("one two", stream=True))
    frames = [
        orjson.loads(line[6:])
        for line in (await response.text()).splitlines()
        if line.startswith("data: {")
    ]
    assert {frame["model"] for frame in frames} == {"backup"}


async def test_a_body_that_trickles_in_too_slowly_is_a_408_and_frees_the_connection():
    """A slow-body client (slowloris) is cut after server.body_timeout_s, not held for minutes."""
    moe_config = {"server": {"body_timeout_s": 0.5}, **ECHO}
    runner = aiohttp_web.AppRunner(create_app(make_moe(moe_config), wait_for_experts=True))
    await runner.setup()
    port = free_port()
    await aiohttp_web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"mess'
        )
        await writer.drain()
        started = time.monotonic()
        head = await asyncio.wait_for(reader.read(4096), timeout=10)
        assert time.monotonic() - started < 5
        assert head.startswith(b"HTTP/1.1 408")
        assert b"request_timeout" in head
        writer.close()
    finally:
        await runner.cleanup()
