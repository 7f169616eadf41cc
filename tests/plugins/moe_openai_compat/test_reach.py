"""Reaching upstreams: HTTP proxies from the environment or the expert's options (CONNECT tunnels
for https, absolute-form for http), NO_PROXY, extra headers and query parameters, Azure OpenAI."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator

import openai
import pytest
import trustme
from aiohttp.test_utils import TestServer

from moe_core import ConfigError
from moe_core.testing import make_moe
from moe_openai_compat.testing import FakeOpenAI
from tests.conftest import streamed_content, user
from tests.plugins.moe_openai_compat.fakeproxy import FakeProxy

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def remote(base_url: str, **options) -> dict:
    return {"experts": {"remote": {"kind": "openai", "base_url": base_url, **options}}}


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def proxy() -> AsyncIterator[FakeProxy]:
    fake = FakeProxy()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def tls_upstream(tmp_path, monkeypatch) -> AsyncIterator[tuple[FakeOpenAI, int]]:
    """The fake upstream over TLS, with a certificate for ``upstream.test`` from a CA that the
    gateway trusts through ``SSL_CERT_FILE`` (as any OpenSSL client does)."""
    authority = trustme.CA()
    certificate = authority.issue_cert("upstream.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    fake = FakeOpenAI()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server(ssl=context)
    yield fake, server.port
    await server.close()


async def test_https_upstreams_are_reached_through_a_connect_tunnel_of_the_env_proxy(
    gateway, tls_upstream, proxy, monkeypatch
):
    fake, port = tls_upstream
    proxy.hosts["upstream.test"] = "127.0.0.1"  # only the proxy knows where the upstream is
    proxy.authorization = "Basic " + base64.b64encode(b"me:s3cret").decode()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://me:s3cret@"))
    client = await gateway(remote(f"https://upstream.test:{port}/v1"))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 200, await response.text()
    assert (await response.json())["choices"][0]["message"]["content"] == "echo: hi"
    response = await client.post("/v1/chat/completions", json=user("hi", stream=True))
    assert response.status == 200 and streamed_content(await response.text()) == "echo: hi"
    assert proxy.lines[0] == f"CONNECT upstream.test:{port} HTTP/1.1"
    assert len(fake.requests) == 2 and fake.paths[0] == "/v1/chat/completions"
    # The credentials went to the proxy only, never through the tunnel to the upstream.
    assert all("Proxy-Authorization" not in headers for headers in fake.headers)


async def test_http_upstreams_go_to_the_proxy_in_absolute_form(
    gateway, fake_upstream, proxy, monkeypatch
):
    fake, base_url = fake_upstream
    port = base_url.split(":")[2].split("/")[0]
    proxy.hosts["upstream.test"] = "127.0.0.1"
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = await gateway(remote(f"http://upstream.test:{port}/v1", query={"tenant": "a b"}))
    for _ in range(2):  # the second call reuses the kept-alive connection to the proxy
        response = await client.post("/v1/chat/completions", json=user("hi"))
        assert response.status == 200, await response.text()
    target = f"http://upstream.test:{port}/v1/chat/completions?tenant=a+b"
    assert proxy.lines == [f"POST {target} HTTP/1.1"] * 2
    assert fake.paths[-1] == "/v1/chat/completions?tenant=a+b"


async def test_no_proxy_and_the_experts_own_proxy_option_win_over_the_environment(
    gateway, fake_upstream, proxy, monkeypatch
):
    _, base_url = fake_upstream
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    client = await gateway(remote(base_url))
    assert (await client.post("/v1/chat/completions", json=user("hi"))).status == 200

    monkeypatch.delenv("NO_PROXY")
    client = await gateway(remote(base_url))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 503  # the environment's dead proxy was used
    assert (
        "cannot reach its upstream: cannot connect to the proxy"
        in (await response.json())["error"]["message"]
    )

    client = await gateway(remote(base_url, proxy="direct"))
    assert (await client.post("/v1/chat/completions", json=user("hi"))).status == 200
    client = await gateway(remote(base_url, proxy=proxy.url))
    assert (await client.post("/v1/chat/completions", json=user("hi"))).status == 200
    assert proxy.lines == [f"POST {base_url}/chat/completions HTTP/1.1"]


async def test_a_proxy_that_refuses_the_tunnel_is_a_503_naming_no_address(
    gateway, proxy, monkeypatch
):
    proxy.authorization = "Basic bm9ib2R5Og=="
    client = await gateway(remote("https://upstream.test:8443/v1", proxy=proxy.url))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 503
    message = (await response.json())["error"]["message"]
    assert "'remote'" in message and "refused the tunnel with status 407" in message
    assert "upstream.test" not in message and "127.0.0.1" not in message


def test_a_proxy_option_that_is_not_an_http_url_stops_startup():
    with pytest.raises(ConfigError, match="experts.remote.proxy"):
        make_moe(remote("http://127.0.0.1:1/v1", proxy="socks5://127.0.0.1:1080"))


async def test_extra_headers_secret_headers_and_query_parameters_reach_the_upstream(
    gateway, fake_upstream, monkeypatch
):
    fake, base_url = fake_upstream
    monkeypatch.setenv("GATEWAY_TOKEN", "tok-123")
    config = remote(
        base_url + "?region=eu",
        headers={"X-Team": "search"},
        headers_env={"X-Gateway-Token": "GATEWAY_TOKEN"},
        query={"tenant": "acme"},
    )
    client = await gateway(config)
    for stream in (False, True):
        response = await client.post("/v1/chat/completions", json=user("hi", stream=stream))
        assert response.status == 200, await response.text()
        assert fake.paths[-1] == "/v1/chat/completions?region=eu&tenant=acme"
        assert fake.headers[-1]["X-Team"] == "search"
        assert fake.headers[-1]["X-Gateway-Token"] == "tok-123"
    monkeypatch.delenv("GATEWAY_TOKEN")
    with pytest.raises(ConfigError, match="headers_env.X-Gateway-Token.*GATEWAY_TOKEN"):
        make_moe(config)


async def test_azure_deployments_get_their_path_api_version_and_api_key(
    gateway, fake_upstream, monkeypatch
):
    fake, base_url = fake_upstream
    fake.behaviour.api_key = "azure-key"
    monkeypatch.setenv("AZURE_KEY", "azure-key")
    endpoint = base_url.removesuffix("/v1")
    azure = {"deployment": "gpt-4o prod", "api_version": "2024-10-21"}
    client = await gateway(remote(endpoint, api_key_env="AZURE_KEY", azure=azure))
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)
    completion = await sdk.chat.completions.create(
        model="remote", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "echo: hi"
    stream = await sdk.chat.completions.create(
        model="remote", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == (
        "echo: hi"
    )
    path = "/openai/deployments/gpt-4o%20prod/chat/completions?api-version=2024-10-21"
    assert fake.paths == [path, path]
    assert fake.headers[-1]["api-key"] == "azure-key"
    assert "Authorization" not in fake.headers[-1]

    monkeypatch.setenv("AZURE_KEY", "wrong")
    client = await gateway(remote(endpoint, api_key_env="AZURE_KEY", azure=azure))
    response = await client.post("/v1/chat/completions", json=user("hi"))
    assert response.status == 502
    assert "check api_key_env" in (await response.json())["error"]["message"]
