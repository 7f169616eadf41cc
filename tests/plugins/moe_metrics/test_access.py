"""Who may scrape: anyone on a gateway without keys; only an admin key where keys are set."""

from __future__ import annotations

from tests.plugins.moe_metrics.conftest import parse, scrape, total

ECHO = {"experts": {"a": {"kind": "echo"}}}
CLIENT = {"Authorization": "Bearer client-key"}
ADMIN = {"Authorization": "Bearer admin-key"}


def keyed(monkeypatch, **metrics) -> dict:
    monkeypatch.setenv("TEST_CLIENT_KEYS", "client-key")
    monkeypatch.setenv("TEST_ADMIN_KEYS", "admin-key")
    server = {"api_keys_env": "TEST_CLIENT_KEYS", "admin_keys_env": "TEST_ADMIN_KEYS"}
    return {**ECHO, "server": server, "metrics": metrics}


async def test_with_keys_only_an_admin_key_may_scrape(gateway, monkeypatch):
    client = await gateway(keyed(monkeypatch))
    missing = await client.get("/metrics")
    assert missing.status == 401
    assert (await missing.json())["error"]["type"] == "authentication_error"
    refused = await client.get("/metrics", headers=CLIENT)
    assert refused.status == 403
    error = (await refused.json())["error"]
    assert error["type"] == "permission_error" and "admin" in error["message"]
    assert "moe_requests_total" not in await refused.text()
    samples = await scrape(client, **ADMIN)
    # The refused scrapes are counted like any request.
    assert total(samples, "moe_requests_total", route="/metrics", status="403") == 1


async def test_any_api_key_may_scrape_where_the_config_allows_it(gateway, monkeypatch):
    client = await gateway(keyed(monkeypatch, admin_only=False))
    assert (await client.get("/metrics")).status == 401
    await scrape(client, **CLIENT)


async def test_without_keys_anyone_may_scrape_and_prometheus_may_ask_for_openmetrics(gateway):
    client = await gateway(ECHO)
    await scrape(client)
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    text = await response.text()
    assert text.rstrip().endswith("# EOF")
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"moe_requests", "moe_models_loaded"} <= names
    assert parse(await (await client.get("/metrics")).text())
