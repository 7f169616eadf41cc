"""Which HTTP proxy, if any, carries an expert's calls: its own ``proxy`` option, else the
environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, less the hosts ``NO_PROXY`` names),
read the way the rest of Python reads it (``urllib.request.getproxies``), so that the gateway
behaves like curl, requests or the openai SDK on the same machine.

Only plain-HTTP proxies are spoken to (as almost every corporate proxy is): an https upstream is
reached through a ``CONNECT`` tunnel, TLS end to end; an http upstream with absolute-form
requests. Credentials in the proxy URL become a ``Proxy-Authorization`` header.
"""

from __future__ import annotations

import base64
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DIRECT = "direct"
"""The ``proxy`` option's value for "no proxy, whatever the environment says"."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """Where to connect instead of the upstream, and what to tell the proxy."""

    host: str
    port: int
    authorization: str | None = None  # the Proxy-Authorization header's value

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """An ``http://[user:password@]host[:port]`` proxy URL (a bare ``host:port`` too, as
        the environment variables often hold); ``ValueError`` for anything else."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"a proxy must be an http://host:port URL (TLS to the proxy itself is not "
                f"supported), got {_without_credentials(url)!r}"
            )
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        return cls(parts.hostname, parts.port or 80, authorization)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def proxy_for(base_url: str, option: str | None) -> Proxy | None:
    """The proxy for calls to ``base_url``: the expert's ``option`` when set (``"direct"``: none),
    else the environment's for the URL's scheme unless ``NO_PROXY`` covers its host."""
    if option is not None:
        return None if option == DIRECT else Proxy.parse(option)
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    url = proxies.get(parts.scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
        return None
    return Proxy.parse(url)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
