"""Fixtures: loopback fakes of the web pages, search providers and vision model a gateway uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from moe_context.testing import FakeSearch
from moe_openai_compat.testing import FakeBehaviour, FakeOpenAI

ARTICLE = """<!doctype html><html><head><title>Moon base opens</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<article><h1>Moon base opens</h1>
<p>The first lunar research base opened on Tuesday with twelve scientists aboard. It will
study regolith and water ice near the south pole for three years.</p>
<p>Officials said the base cost four billion dollars and took six years to build.</p>
</article><footer>Copyright Example News</footer></body></html>"""

BIG = (
    "<html><head><title>Long report</title></head><body><article><h1>Long report</h1>"
    + "".join(f"<p>Paragraph {n} of the long report on lunar water ice.</p>" for n in range(5000))
    + "</article></body></html>"
)


@dataclass
class Pages:
    """A small web site on loopback: an article, redirects, a large page; every hit recorded."""

    base: str = ""
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def app(self) -> web.Application:
        async def record(request: web.Request, handler):
            self.hits.append(request.path_qs)
            return await handler(request)

        app = web.Application(middlewares=[web.middleware(record)])
        app.router.add_get("/article", self.page(ARTICLE, "text/html"))
        app.router.add_get("/notes.txt", self.page("Plain notes: the code is 7731.", "text/plain"))
        app.router.add_get("/big", self.page(BIG, "text/html"))

        async def missing(request: web.Request) -> web.Response:
            raise web.HTTPNotFound()

        app.router.add_get("/missing", missing)

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(request.query["to"])

        app.router.add_get("/redirect", redirect)
        return app

    @staticmethod
    def page(text: str, content_type: str):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=text, content_type=content_type)

        return handler


async def _serve(app: web.Application) -> tuple[TestServer, str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def pages() -> AsyncIterator[Pages]:
    site = Pages()
    server, site.base = await _serve(site.app())
    yield site
    await server.close()


@pytest.fixture
async def fake_search() -> AsyncIterator[tuple[FakeSearch, str]]:
    """The fake search providers and their root URL."""
    fake = FakeSearch()
    server, base = await _serve(fake.app())
    yield fake, base
    await server.close()


@pytest.fixture
async def openai_fake() -> AsyncIterator[Callable[..., object]]:
    """Start fake OpenAI-compatible upstreams: ``await start(reply=...)`` -> (fake, base_url)."""
    servers: list[TestServer] = []

    async def start(**behaviour) -> tuple[FakeOpenAI, str]:
        fake = FakeOpenAI(behaviour=FakeBehaviour(**behaviour))
        server, base = await _serve(fake.app())
        servers.append(server)
        return fake, f"{base}/v1"

    yield start
    for server in servers:
        await server.close()


def openai_expert(base_url: str, **extra) -> dict:
    return {"kind": "openai", "base_url": base_url, **extra}


VISION_CARD = {"supports_vision": True, "modalities_in": ["text", "image"]}
TEXT_CARD = {"supports_vision": False}
"""An OpenAI-compatible expert's card claims vision unless told otherwise."""


def text_expert(base_url: str, **extra) -> dict:
    return openai_expert(base_url, card=TEXT_CARD, **extra)
