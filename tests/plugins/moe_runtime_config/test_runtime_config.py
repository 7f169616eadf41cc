"""Seed 004's model configuration API: an expert added over HTTP answers the next request with
no restart, survives a restart, needs the admin key, and its key is never shown or logged."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from moe_core.orchestrator import MoE
from moe_core.plugins import create_plugin_manager
from moe_core.server import create_app
from moe_core.testing import testing_plugin
from tests.conftest import user

ADMIN = {"Authorization": "Bearer admin"}
CLIENT = {"Authorization": "Bearer client"}


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLIENT_KEYS", "client")
    monkeypatch.setenv("ADMIN_KEYS", "admin")
    path = tmp_path / "moe.yaml"
    config = {
        "server": {"api_keys_env": "CLIENT_KEYS", "admin_keys_env": "ADMIN_KEYS"},
        "experts": {"local": {"kind": "echo", "prefix": "local: "}},
        "gate": {"kind": "fixed", "expert": "local"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def serve(path: Path) -> TestClient:
    manager = create_plugin_manager(plugins=[("testing", testing_plugin)])
    moe = MoE.from_config(path, plugin_manager=manager)
    client = TestClient(TestServer(create_app(moe, wait_for_experts=True), host="127.0.0.1"))
    await client.start_server()
    return client


async def test_an_expert_added_over_http_answers_at_once_and_after_a_restart(
    config_file, fake_upstream, caplog
):
    fake, base_url = fake_upstream
    fake.behaviour.api_key = "sk-upstream-secret"
    client = await serve(config_file)
    try:
        form = {"model_name": "remote", "base_url": base_url, "api_key": "sk-upstream-secret"}
        with caplog.at_level(logging.DEBUG):
            added = await client.post("/config/model", data=form, headers=ADMIN)
        assert added.status == 200, await added.text()
        assert "sk-upstream-secret" not in await added.text()
        answer = await client.post(
            "/v1/chat/completions", json=user("hi", model="remote"), headers=CLIENT
        )
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["choices"][0]["message"]["content"] == "echo: hi"
        listed = await client.get("/config/models", headers=ADMIN)
        text = await listed.text()
        assert "sk-upstream-secret" not in text
        remote = next(m for m in (await listed.json())["data"] if m["id"] == "remote")
        assert remote["options"]["base_url"] == base_url and remote["api_key_set"]
        assert remote["from"] == "runtime"
    finally:
        await client.close()
    assert "sk-upstream-secret" not in caplog.text
    secrets = config_file.with_suffix(".secrets.yaml")
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert "sk-upstream-secret" not in config_file.with_suffix(".overlay.yaml").read_text()
    restarted = await serve(config_file)  # the overlay is applied on every start
    try:
        answer = await restarted.post(
            "/v1/chat/completions", json=user("again", model="remote"), headers=CLIENT
        )
        assert (await answer.json())["choices"][0]["message"]["content"] == "echo: again"
    finally:
        await restarted.close()


async def test_changes_need_the_admin_key(config_file, fake_upstream):
    _, base_url = fake_upstream
    client = await serve(config_file)
    try:
        body = {"name": "remote", "base_url": base_url}
        assert (await client.post("/config/model", json=body)).status == 401
        assert (await client.post("/config/model", json=body, headers=CLIENT)).status == 403
        assert (await client.get("/config/models", headers=CLIENT)).status == 403
        assert (await client.delete("/config/model/local", headers=CLIENT)).status == 403
    finally:
        await client.close()


async def test_a_change_the_configuration_cannot_take_is_a_400_and_changes_nothing(
    config_file, fake_upstream
):
    _, base_url = fake_upstream
    client = await serve(config_file)
    try:
        refused = await client.delete("/config/model/local", headers=ADMIN)  # the gate needs it
        assert refused.status == 400
        assert (await refused.json())["error"]["code"] == "invalid_config"
        answer = await client.post("/v1/chat/completions", json=user("hi"), headers=CLIENT)
        assert (await answer.json())["choices"][0]["message"]["content"] == "local: hi"
        bad = await client.post("/config/model", json={"name": "../x"}, headers=ADMIN)
        assert bad.status == 400 and (await bad.json())["error"]["param"] == "name"
        missing = await client.post("/config/model", json={"name": "new"}, headers=ADMIN)
        assert (await missing.json())["error"]["param"] == "base_url"
        # Added, then deleted: gone from the models and from the next start.
        body = {"name": "extra", "base_url": base_url}
        assert (await client.post("/config/model", json=body, headers=ADMIN)).status == 200
        assert (await client.delete("/config/model/extra", headers=ADMIN)).status == 200
        models = await (await client.get("/v1/models", headers=CLIENT)).json()
        assert "extra" not in {model["id"] for model in models["data"]}
    finally:
        await client.close()
