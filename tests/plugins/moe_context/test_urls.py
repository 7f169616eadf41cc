"""Pages linked in a question are read and given as cited context, and the gateway cannot be
made to fetch from its own network: loopback, private and link-local addresses are refused
unless allowed, on every redirect hop, checking every address a name resolves to and
connecting only to the addresses it checked."""

from __future__ import annotations

import socket
import time

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from moe_context.fetch import FetchFailed, FetchPolicy, FetchRefused, SafeFetcher
from tests.plugins.moe_context.conftest import text_expert


def reading(base_url: str, **policy) -> dict:
    return {
        "experts": {"chat": text_expert(base_url)},
        "preparers": {"urls": {"kind": "read-urls", **policy}},
    }


async def ask(gateway, config, text: str) -> dict:
    client = await gateway(config)
    response = await client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]}
    )
    assert response.status == 200, await response.text()
    return await response.json()


def context_of(upstream) -> str:
    """The context block the expert was given (the system message before the question)."""
    messages = upstream.requests[-1]["messages"]
    return "\n".join(m["content"] for m in messages if m["role"] == "system")


async def test_a_linked_page_is_read_and_cited(gateway, openai_fake, pages):
    upstream, base_url = await openai_fake(reply="It opened on Tuesday [P1].")
    url = pages.url("/article")
    body = await ask(
        gateway, reading(base_url, allow_networks=["127.0.0.0/8"]), f"When did it open? {url}."
    )
    context = context_of(upstream)
    assert f"[P1] Moon base opens — {url}\n" in context
    assert "twelve scientists aboard" in context
    assert "Copyright" not in context and "About" not in context  # only the article's text
    assert upstream.requests[-1]["messages"][-1]["content"] == f"When did it open? {url}."
    assert body["choices"][0]["message"]["content"] == "It opened on Tuesday [P1]."
    source = {"id": "P1", "title": "Moon base opens", "url": url, "by": "urls"}
    assert body["moe_metadata"]["sources"] == [source]


async def test_loopback_is_refused_by_default_and_nothing_is_sent(gateway, openai_fake, pages):
    upstream, base_url = await openai_fake()
    url = pages.url("/article")
    body = await ask(gateway, reading(base_url), f"Summarise {url}")
    assert pages.hits == []
    assert "127.0.0.1 is not a public address (loopback): not fetched" in context_of(upstream)
    assert any(
        note.startswith(f"urls: {url} not read: 127.0.0.1 is not a public address (loopback)")
        for note in body["moe_metadata"]["notes"]
    )


@pytest.mark.parametrize("policy", [{}, {"allow_private": True}])
async def test_the_metadata_address_is_refused_even_with_private_allowed(
    gateway, openai_fake, policy
):
    _, base_url = await openai_fake()
    started = time.perf_counter()
    body = await ask(
        gateway, reading(base_url, **policy), "What is at http://169.254.169.254/latest/meta-data/"
    )
    assert time.perf_counter() - started < 3  # refused before any connection was tried
    notes = body["moe_metadata"]["notes"]
    assert any("169.254.169.254 is not a public address (link-local)" in n for n in notes)


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:{port}/article"]
)
async def test_a_redirect_to_a_refused_address_is_refused(gateway, openai_fake, pages, target):
    upstream, base_url = await openai_fake()
    target = target.format(port=pages.base.rsplit(":", 1)[1])
    url = pages.url(f"/redirect?to={target}")
    body = await ask(gateway, reading(base_url, allow_networks=["127.0.0.1/32"]), f"Read {url}")
    assert pages.hits == [f"/redirect?to={target}"]  # the allowed first hop, and nothing else
    notes = body["moe_metadata"]["notes"]
    assert any(f"urls: {url} not read:" in n and "not a public address" in n for n in notes)
    assert "twelve scientists" not in context_of(upstream)


async def test_a_redirect_within_what_is_allowed_is_followed(gateway, openai_fake, pages):
    upstream, base_url = await openai_fake()
    url = pages.url("/redirect?to=/article")
    body = await ask(gateway, reading(base_url, allow_private=True), f"Read {url}")
    assert pages.hits == ["/redirect?to=/article", "/article"]
    assert "twelve scientists" in context_of(upstream)
    final = pages.url("/article")
    source = {"id": "P1", "title": "Moon base opens", "url": final, "by": "urls"}
    assert body["moe_metadata"]["sources"] == [source]


async def test_limits_on_size_redirects_and_errors(gateway, openai_fake, pages):
    upstream, base_url = await openai_fake()
    loop = pages.url("/redirect?to=/redirect?to=/article")
    text = f"Compare {pages.url('/big')} with {loop} and {pages.url('/missing')}"
    config = reading(base_url, allow_private=True, max_bytes=20_000, max_redirects=1)
    body = await ask(gateway, config, text)
    context = context_of(upstream)
    assert "[…only the first 20,000 bytes were read]" in context
    assert f"[P2] {loop}\n(could not be read: more than 1 redirects)" in context
    assert "[P3]" in context and "(could not be read: HTTP 404 Not Found)" in context
    assert len([n for n in body["moe_metadata"]["notes"] if "not read" in n]) == 2


class FakeDNS(AbstractResolver):
    """Resolves names from a table; each lookup takes the next answer for the name."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET) -> list[ResolveResult]:
        self.lookups.append(host)
        answers = self.table[host]
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


async def test_one_private_address_among_public_ones_is_enough_to_refuse():
    dns = FakeDNS({"mixed.example": [["93.184.216.34", "10.0.0.7"]]})
    fetcher = SafeFetcher(FetchPolicy(), resolver=dns)
    refused = r"mixed.example resolves to 10.0.0.7, not a public address \(private\)"
    with pytest.raises(FetchRefused, match=refused):
        await fetcher.fetch("http://mixed.example/")
    dns = FakeDNS({"mapped.example": [["::ffff:127.0.0.1"]]})
    with pytest.raises(FetchRefused, match=r"::ffff:7f00:1, not a public address \(loopback\)"):
        await SafeFetcher(FetchPolicy(), resolver=dns).fetch("http://mapped.example/")


async def test_the_connection_goes_to_the_address_that_was_checked(pages):
    """A name that resolves to an allowed address when checked and to another one a moment
    later (DNS rebinding) is fetched from the checked address: it is resolved once a hop."""
    port = pages.base.rsplit(":", 1)[1]
    dns = FakeDNS({"rebind.example": [["127.0.0.1"], ["10.9.9.9"]]})
    fetcher = SafeFetcher(FetchPolicy(allow_networks=["127.0.0.0/8"]), resolver=dns)
    fetched = await fetcher.fetch(f"http://rebind.example:{port}/notes.txt")
    assert fetched.body == b"Plain notes: the code is 7731."
    assert dns.lookups == ["rebind.example"]
    assert pages.hits == ["/notes.txt"]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", "only http and https URLs are read, not 'file'"),
        ("ftp://127.0.0.1/x", "only http and https URLs are read, not 'ftp'"),
        ("http://0.0.0.0:80/", r"0.0.0.0 is not a public address \(unspecified\)"),
        ("http://[::1]/", r"::1 is not a public address \(loopback\)"),
        ("http://10.1.2.3/", r"10.1.2.3 is not a public address \(private\)"),
        ("http://224.0.0.1/", r"\(multicast\)"),
        ("http://100.64.0.1/", r"\(reserved\)"),
        ("http://[64:ff9b::a9fe:a9fe]/", r"\(link-local\)"),  # 169.254.169.254 via NAT64
        ("http://[2002:7f00:1::]/", r"\(loopback\)"),  # 127.0.0.1 in 6to4
    ],
)
async def test_schemes_and_addresses_that_are_never_fetched(url, error):
    with pytest.raises(FetchRefused, match=error):
        await SafeFetcher(FetchPolicy()).fetch(url)


async def test_an_unresolvable_name_fails_cleanly():
    dns = FakeDNS({})

    async def fail(host, port=0, family=socket.AF_INET):
        raise OSError("Name or service not known")

    dns.resolve = fail  # type: ignore[method-assign]
    with pytest.raises(FetchFailed, match="cannot resolve nowhere.example"):
        await SafeFetcher(FetchPolicy(), resolver=dns).fetch("http://nowhere.example/")
