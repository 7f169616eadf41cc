"""Hot reload: a changed configuration takes effect without a restart, requests in flight finish
on the parts they started with, unchanged experts keep their loaded models, and an invalid
configuration leaves the running one serving and says which key is wrong."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI

from moe_core.appkeys import MOE_KEY
from moe_core.orchestrator import MoE
from moe_core.plugins import create_plugin_manager
from moe_core.server import create_app
from moe_core.testing import testing_plugin
from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import user


@pytest.fixture
async def upstreams() -> AsyncIterator[list[tuple[FakeOpenAI, str]]]:
    """Two fake OpenAI upstreams: the one an expert points at, and the one it moves to."""
    running = []
    for reply in ("from the first upstream", "from the second upstream"):
        fake = FakeOpenAI()
        fake.behaviour.reply = reply
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        running.append((fake, server))
    yield [(fake, str(server.make_url("/v1"))) for fake, server in running]
    for _, server in running:
        await server.close()


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def remote(base_url: str, **server) -> dict:
    return {
        "server": {"shutdown_timeout_s": 0.5, **server},
        "experts": {
            "remote": {"kind": "openai", "base_url": base_url, "model": "m"},
            "local": {"kind": "echo", "prefix": "local: "},
        },
        "gate": {"kind": "fixed", "expert": "remote"},
    }


async def serve(path: Path) -> TestClient:
    manager = create_plugin_manager(plugins=[("testing", testing_plugin)])
    moe = MoE.from_config(path, plugin_manager=manager)
    client = TestClient(TestServer(create_app(moe, wait_for_experts=True), host="127.0.0.1"))
    await client.start_server()
    return client


async def test_a_new_base_url_takes_effect_and_a_stream_in_flight_finishes(tmp_path, upstreams):
    (first, first_url), (_, second_url) = upstreams
    first.behaviour.chunk_delay_s = 0.1
    path = write(tmp_path / "moe.yaml", remote(first_url))
    client = await serve(path)
    sdk = AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="none")
    try:
        stream = await sdk.chat.completions.create(
            model="remote", messages=[user("hi")["messages"][0]], stream=True
        )
        received = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
            if len(received) == 1:
                # Mid-stream: point the expert at the other upstream and reload.
                write(path, remote(second_url))
                reloaded = await client.post("/-/reload")
                assert reloaded.status == 200, await reloaded.text()
                report = await reloaded.json()
                assert report["replaced"] == ["remote"] and report["kept"] == ["local"]
                assert report["restart"] == []
        assert "".join(received) == "from the first upstream"
        answer = await sdk.chat.completions.create(
            model="remote", messages=[user("hi")["messages"][0]]
        )
        assert answer.choices[0].message.content == "from the second upstream"
    finally:
        await sdk.close()
        await client.close()


async def test_unchanged_experts_keep_their_loaded_object(tmp_path, upstreams):
    (_, first_url), _ = upstreams
    config = remote(first_url)
    path = write(tmp_path / "moe.yaml", config)
    client = await serve(path)
    try:
        moe = client.server.app[MOE_KEY]
        local_before, gate_before = moe.experts["local"], moe.gate
        config["experts"]["extra"] = {"kind": "echo", "prefix": "extra: "}
        write(path, config)
        report = await (await client.post("/-/reload")).json()
        assert report["added"] == ["extra"] and set(report["kept"]) == {"remote", "local"}
        assert moe.experts["local"] is local_before  # its model was not loaded again
        assert moe.gate is not gate_before and report["rebuilt"] == ["gate", "combiner"]
        for _ in range(50):
            if moe.experts["extra"].state == "ready":
                break
            await asyncio.sleep(0.02)
        answer = await client.post("/v1/chat/completions", json=user("x", model="extra"))
        assert (await answer.json())["choices"][0]["message"]["content"] == "extra: x"
        models = await (await client.get("/v1/models")).json()
        assert "extra" in {model["id"] for model in models["data"]}
    finally:
        await client.close()


async def test_a_typo_keeps_the_old_configuration_serving_and_names_the_key(tmp_path, upstreams):
    (_, first_url), _ = upstreams
    config = remote(first_url)
    path = write(tmp_path / "moe.yaml", config)
    client = await serve(path)
    try:
        config["experts"]["local"]["prefx"] = "oops"
        write(path, config)
        refused = await client.post("/-/reload")
        assert refused.status == 400
        error = (await refused.json())["error"]
        assert error["code"] == "invalid_config"
        assert "experts.local" in error["message"] and "prefx" in error["message"]
        answer = await client.post("/v1/chat/completions", json=user("hi", model="local"))
        assert (await answer.json())["choices"][0]["message"]["content"] == "local: hi"
    finally:
        await client.close()


async def test_reload_needs_the_admin_key_and_reports_sections_needing_a_restart(
    tmp_path, upstreams, monkeypatch
):
    monkeypatch.setenv("CLIENT_KEYS", "client")
    monkeypatch.setenv("ADMIN_KEYS", "admin")
    (_, first_url), _ = upstreams
    config = remote(first_url, api_keys_env="CLIENT_KEYS", admin_keys_env="ADMIN_KEYS")
    path = write(tmp_path / "moe.yaml", config)
    client = await serve(path)
    try:
        refused = await client.post("/-/reload", headers={"Authorization": "Bearer client"})
        assert refused.status == 403
        config["server"]["access_log"] = False
        write(path, config)
        done = await client.post("/-/reload", headers={"Authorization": "Bearer admin"})
        report = await done.json()
        assert report["restart"] == ["server"] and report["replaced"] == []
    finally:
        await client.close()
