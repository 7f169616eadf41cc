"""Faithful local fakes of the search providers, for tests and offline demos.

One loopback server speaks three wire formats: SearXNG's JSON API (``GET /search?q=&format=json``),
Brave Search (``GET /res/v1/web/search`` with ``X-Subscription-Token``) and Tavily
(``POST /search`` with ``Authorization: Bearer``), each with its real response shape and its
real way of refusing a bad key. Every request is kept in ``requests`` so a test sees what the
gateway asked. Run it alone with ``python -m moe_context.testing --port 9200`` and point a
provider's ``base_url`` at ``http://127.0.0.1:9200`` (Brave: ``http://127.0.0.1:9200/res/v1``).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def sample_results(query: str, count: int = 3) -> list[dict[str, str]]:
    """Deterministic results about ``query``: a title, a URL and a snippet each."""
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-") or "query"
    return [
        {
            "title": f"{query} — report {n}",
            "url": f"https://news.example/{slug}/{n}",
            "content": f"Report {n} on {query}: published this morning, with the latest figures.",
            "published": f"2026-01-0{n}T08:00:00Z",
        }
        for n in range(1, count + 1)
    ]


@dataclass
class FakeSearch:
    api_key: str = "fake-search-key"
    """The key the Brave and Tavily routes require."""
    results: list[dict[str, str]] | None = None
    """What every search returns; default: :func:`sample_results` for its query."""
    status: int | None = None
    """Answer every request with this error status."""
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/search", self.searxng)
        app.router.add_post("/search", self.tavily)
        app.router.add_get("/res/v1/web/search", self.brave)
        return app

    def _found(self, query: str, count: int) -> list[dict[str, str]]:
        return (self.results if self.results is not None else sample_results(query))[:count]

    async def searxng(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        self.requests.append({"provider": "searxng", "query": query, "params": dict(request.query)})
        if request.query.get("format") != "json":
            # An instance without the JSON format enabled refuses it this way.
            return web.Response(status=403, text="403 Forbidden", content_type="text/html")
        if self.status is not None:
            return web.Response(status=self.status, text="error", content_type="text/html")
        results = [
            {
                "url": r["url"],
                "title": r["title"],
                "content": r["content"],
                "engine": "fake",
                "engines": ["fake"],
                "score": 1.0,
                "category": "general",
                "publishedDate": r.get("published"),
            }
            for r in self._found(query, 10)
        ]
        return web.json_response(
            {
                "query": query,
                "number_of_results": len(results),
                "results": results,
                "answers": [],
                "corrections": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )

    async def brave(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        self.requests.append(
            {
                "provider": "brave",
                "query": query,
                "params": dict(request.query),
                "headers": {"X-Subscription-Token": request.headers.get("X-Subscription-Token")},
            }
        )
        if request.headers.get("X-Subscription-Token") != self.api_key:
            return web.json_response(
                {
                    "type": "ErrorResponse",
                    "error": {
                        "id": "fake",
                        "status": 422,
                        "code": "SUBSCRIPTION_TOKEN_INVALID",
                        "detail": "The provided subscription token is invalid.",
                    },
                },
                status=422,
            )
        if self.status is not None:
            return web.json_response({"type": "ErrorResponse"}, status=self.status)
        count = int(request.query.get("count", "20"))
        results = [
            {
                "type": "search_result",
                "title": r["title"],
                "url": r["url"],
                "description": r["content"],
                "page_age": r.get("published"),
                "language": "en",
                "family_friendly": True,
            }
            for r in self._found(query, count)
        ]
        return web.json_response(
            {
                "type": "search",
                "query": {"original": query, "more_results_available": False},
                "mixed": {"type": "mixed", "main": []},
                "web": {"type": "search", "results": results, "family_friendly": True},
            }
        )

    async def tavily(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = str(body.get("query", ""))
        self.requests.append(
            {
                "provider": "tavily",
                "query": query,
                "body": body,
                "headers": {"Authorization": request.headers.get("Authorization")},
            }
        )
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                {"detail": {"error": "Unauthorized: missing or invalid API key."}}, status=401
            )
        if self.status is not None:
            return web.json_response({"detail": {"error": "fake failure"}}, status=self.status)
        results = [
            {
                "title": r["title"],
                "url": r["url"],
                "content": r["content"],
                "score": 0.9,
                "raw_content": None,
                "published_date": r.get("published"),
            }
            for r in self._found(query, int(body.get("max_results", 5)))
        ]
        return web.json_response(
            {
                "query": query,
                "follow_up_questions": None,
                "answer": None,
                "images": [],
                "results": results,
                "response_time": 0.01,
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake SearXNG, Brave and Tavily on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--api-key", default="fake-search-key")
    args = parser.parse_args()
    web.run_app(FakeSearch(api_key=args.api_key).app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
