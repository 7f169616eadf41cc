"""Web search providers: SearXNG's JSON API, Brave Search and Tavily, behind one small interface.

Each provider is chosen in the ``web-search`` preparer's options by ``kind`` and returns the
same :class:`SearchResult` list. The provider's address is the operator's configuration, not
the caller's, so it may be a SearXNG on loopback; keys are read from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import aiohttp
import orjson
from pydantic import Field

from moe_core import BaseURL, ConfigError, Options
from moe_core.errors import upstream_detail


class SearXNGOptions(Options):
    kind: Literal["searxng"]
    base_url: BaseURL = Field(description="The instance's root, e.g. http://127.0.0.1:8888")
    categories: str | None = Field(None, description="e.g. general or news")
    language: str | None = None
    time_range: Literal["day", "week", "month", "year"] | None = None


class BraveOptions(Options):
    kind: Literal["brave"]
    base_url: BaseURL = "https://api.search.brave.com/res/v1"
    api_key_env: str = Field("BRAVE_API_KEY", description="Variable holding the subscription token")
    country: str | None = None
    freshness: str | None = Field(None, description="pd, pw, pm, py or a date range")


class TavilyOptions(Options):
    kind: Literal["tavily"]
    base_url: BaseURL = "https://api.tavily.com"
    api_key_env: str = Field("TAVILY_API_KEY", description="Variable holding the API key")
    topic: Literal["general", "news", "finance"] = "general"
    search_depth: Literal["basic", "advanced"] = "basic"


ProviderOptions = Annotated[
    SearXNGOptions | BraveOptions | TavilyOptions, Field(discriminator="kind")
]


class SearchFailed(Exception):
    """The provider answered with an error or something unreadable."""


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str
    published: str | None = None


class SearchProvider:
    """One provider's API: :meth:`search` returns at most ``count`` results for a query."""

    def __init__(self, options: ProviderOptions, where: str) -> None:
        self.options = options
        self.key: str | None = None
        env = getattr(options, "api_key_env", None)
        if env is not None:
            self.key = os.environ.get(env)
            if not self.key:
                raise ConfigError(f"{where}.provider.api_key_env: {env} is not set")

    async def search(
        self, session: aiohttp.ClientSession, query: str, count: int
    ) -> list[SearchResult]:
        method, url, request = self.request(query, count)
        async with session.request(method, url, **request) as response:
            raw = await response.read()
        kind = self.options.kind
        if response.status >= 400:
            raise SearchFailed(f"{kind} answered {response.status}: {upstream_detail(raw)}")
        try:
            body = orjson.loads(raw)
        except ValueError:
            raise SearchFailed(f"{kind} answered with something that is not JSON") from None
        if not isinstance(body, dict):
            raise SearchFailed(f"{kind} answered with JSON that is not an object")
        results = [
            self.result(item)
            for item in self.items(body)
            if isinstance(item, dict) and isinstance(item.get("url"), str)
        ]
        return results[:count]

    def request(self, query: str, count: int) -> tuple[str, str, dict[str, Any]]:
        """The HTTP method, URL and aiohttp request arguments of one search."""
        options = self.options
        if isinstance(options, SearXNGOptions):
            params = {"q": query, "format": "json"}
            for name in ("categories", "language", "time_range"):
                if getattr(options, name):
                    params[name] = getattr(options, name)
            return "GET", f"{options.base_url}/search", {"params": params}
        if isinstance(options, BraveOptions):
            params = {"q": query, "count": str(count)}
            if options.country:
                params["country"] = options.country
            if options.freshness:
                params["freshness"] = options.freshness
            headers = {"Accept": "application/json", "X-Subscription-Token": self.key or ""}
            return "GET", f"{options.base_url}/web/search", {"params": params, "headers": headers}
        payload = {
            "query": query,
            "max_results": count,
            "topic": options.topic,
            "search_depth": options.search_depth,
        }
        headers = {"Authorization": f"Bearer {self.key}"}
        return "POST", f"{options.base_url}/search", {"json": payload, "headers": headers}

    def items(self, body: dict[str, Any]) -> list[Any]:
        """The list of results in a provider's answer."""
        if isinstance(self.options, BraveOptions):
            body = body.get("web") or {}
        items = body.get("results")
        return items if isinstance(items, list) else []

    def result(self, item: dict[str, Any]) -> SearchResult:
        """One result, whatever the provider calls its fields."""
        snippet = item.get("description" if isinstance(self.options, BraveOptions) else "content")
        published = (
            item.get("publishedDate")
            or item.get("published_date")
            or item.get("page_age")
            or item.get("age")
        )
        return SearchResult(
            title=str(item.get("title") or item["url"]),
            url=item["url"],
            snippet=str(snippet or ""),
            published=str(published) if published else None,
        )
