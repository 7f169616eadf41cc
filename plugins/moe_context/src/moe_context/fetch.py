"""Fetching a URL a user gave, without letting the gateway be used to reach its own network.

A URL in a chat message is the caller's choice, and the gateway usually runs beside services
that the caller must not reach (a cloud's metadata endpoint at 169.254.169.254, an admin port on
loopback, the private network). So, for every hop of a fetch, redirects included:

- only ``http`` and ``https``;
- the host is resolved once, and *every* address it resolves to must be public (or allowed by
  the policy): one private address among public ones is enough to refuse;
- the connection goes to exactly those checked addresses (a resolver pinned to them), so a name
  that resolves differently a moment later (DNS rebinding) cannot slip in another address;
- redirects are followed by hand, at most ``max_redirects``, each target checked the same way;
- the whole fetch has one time limit, and at most ``max_bytes`` of the (decompressed) body are
  read. No proxy from the environment is used: it would connect on our behalf, unchecked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import Field
from yarl import URL

from moe_core import Options

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REDIRECTS = frozenset({301, 302, 303, 307, 308})
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
CHUNK = 64 * 1024


class FetchPolicy(Options):
    """Where a fetch may go and how much it may take."""

    allow_private: bool = Field(
        False,
        description="Also fetch from loopback and private-network addresses (not link-local)",
    )
    allow_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list,
        description="Networks fetched from even though not public, e.g. 10.1.2.0/24",
    )
    max_bytes: int = Field(2_000_000, ge=1, description="Most of a body read (decompressed)")
    timeout_s: float = Field(10.0, gt=0, description="Limit for the whole fetch, redirects too")
    max_redirects: int = Field(3, ge=0, le=10)
    user_agent: str = "moe-context/0.1 (reads pages linked in chat messages)"


class FetchRefused(Exception):
    """The URL or an address it resolves to is not allowed: nothing was sent to it."""


class FetchFailed(Exception):
    """The fetch was allowed but did not succeed (error status, too many redirects, timeout)."""


@dataclass(frozen=True)
class Fetched:
    url: str
    """Where the body finally came from, after redirects."""
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool


def address_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not public (``"loopback"``, ``"private"``...), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that reach an IPv4 address are judged by that address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


# What allow_private opens: never link-local (cloud metadata lives there), multicast or
# unspecified (0.0.0.0 reaches this machine); list a network in allow_networks to reach those.
PRIVATE_KINDS = frozenset({"loopback", "private", "reserved"})


class _PinnedResolver(AbstractResolver):
    """Answers for one host with the addresses already checked, whatever DNS says now."""

    def __init__(self, host: str, addresses: list[ResolveResult]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"no checked address for {host!r}")
        return [{**address, "port": port} for address in self._addresses]

    async def close(self) -> None:
        return None


class SafeFetcher:
    """Fetches URLs under a :class:`FetchPolicy`.

    :param resolver: how host names become addresses (default: the system's, in a thread).
    """

    def __init__(self, policy: FetchPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver

    def allowed(self, address: IPAddress) -> str | None:
        """None when the policy lets a fetch connect to ``address``, else what kind it is."""
        kind = address_kind(address)
        if kind is None:
            return None
        if any(address in network for network in self.policy.allow_networks):
            return None
        if self.policy.allow_private and kind in PRIVATE_KINDS:
            return None
        return kind

    async def fetch(self, url: str) -> Fetched:
        """The body at ``url``.

        :raises FetchRefused: a scheme, host or address the policy does not allow.
        :raises FetchFailed: an error status, too many redirects, the time limit.
        """
        current = URL(url)
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                for _ in range(self.policy.max_redirects + 1):
                    addresses = await self._checked(current)
                    target = await self._get(current, addresses)
                    if isinstance(target, Fetched):
                        return target
                    current = target
        except TimeoutError:
            raise FetchFailed(f"no complete answer within {self.policy.timeout_s} s") from None
        except aiohttp.ClientError as exc:
            raise FetchFailed(f"{type(exc).__name__}: {exc}") from exc
        raise FetchFailed(f"more than {self.policy.max_redirects} redirects")

    async def _checked(self, url: URL) -> list[ResolveResult]:
        """Every address ``url``'s host resolves to, each one allowed, or FetchRefused."""
        if url.scheme not in ("http", "https"):
            raise FetchRefused(f"only http and https URLs are read, not {url.scheme or 'none'!r}")
        host = url.raw_host
        if not host:
            raise FetchRefused("the URL has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            results: list[ResolveResult] = [_result(host, str(literal), port, family)]
        else:
            try:
                results = await self._resolve(host, port)
            except OSError as exc:
                raise FetchFailed(f"cannot resolve {host}: {exc}") from exc
        if not results:
            raise FetchFailed(f"{host} resolves to no address")
        for result in results:
            address = ipaddress.ip_address(result["host"])
            kind = self.allowed(address)
            if kind is not None:
                what = f"{address} is" if literal is not None else f"{host} resolves to {address},"
                raise FetchRefused(
                    f"{what} not a public address ({kind}): not fetched (the preparer's "
                    "allow_private or allow_networks can allow it)"
                )
        return results

    async def _resolve(self, host: str, port: int) -> list[ResolveResult]:
        resolver = self._resolver or aiohttp.ThreadedResolver()
        return await resolver.resolve(host, port, family=socket.AF_UNSPEC)

    async def _get(self, url: URL, addresses: list[ResolveResult]) -> Fetched | URL:
        """One hop: the body, or where a redirect points."""
        connector = aiohttp.TCPConnector(
            resolver=_PinnedResolver(url.raw_host or "", addresses),
            force_close=True,
            use_dns_cache=False,
        )
        headers = {"User-Agent": self.policy.user_agent, "Accept": "*/*"}
        async with (
            aiohttp.ClientSession(connector=connector, trust_env=False) as session,
            session.get(url, allow_redirects=False, headers=headers) as response,
        ):
            if response.status in REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise FetchFailed(f"HTTP {response.status} without a Location")
                return url.join(URL(location))
            if response.status >= 400:
                raise FetchFailed(f"HTTP {response.status} {response.reason or ''}".strip())
            body, truncated = await _read_at_most(response, self.policy.max_bytes)
            return Fetched(
                url=str(url),
                content_type=response.content_type,
                charset=response.charset,
                body=body,
                truncated=truncated,
            )


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(CHUNK)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


def _result(hostname: str, host: str, port: int, family: int) -> ResolveResult:
    return ResolveResult(
        hostname=hostname,
        host=host,
        port=port,
        family=family,
        proto=0,
        flags=socket.AI_NUMERICHOST,
    )
